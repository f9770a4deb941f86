"""Sparse probing: how well the k SAE features most different between a task's classes
predict the class, beside a probe on the raw activations.

Per task: a balanced, seeded sample (the same number of tokens of each class), split into a
stratified train and test part; on the train part the features are ranked by |mean over
positives − mean over negatives| of their activations and the top k kept; a logistic
regression (standardised inputs) is fitted on those k columns, and one on all raw activation
dimensions; both are scored by accuracy on the test part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from monosemantic.errors import UserError


@dataclass
class ProbeSplit:
    """The sample indices of one task's train and test parts, and their labels."""

    train: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def balanced_split(y_N: Tensor, task: str, max_per_class: int, min_per_class: int,
                   test_fraction: float, seed: int) -> ProbeSplit:
    """A balanced sample of the labelled tokens (`y_N` 0 / 1; -1 left out), split."""
    from sklearn.model_selection import train_test_split

    y = y_N.numpy().astype(np.int64)
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    n = min(len(neg), len(pos), max_per_class)
    if n < min_per_class:
        raise UserError(f"probing task {task!r} has {len(pos)} positive and {len(neg)} negative "
                        f"tokens in the held-out sample, fewer than --min-per-class "
                        f"{min_per_class} of a class: raise --holdout-tokens, or leave "
                        f"{task} out of --tasks (the corpus may not contain it)")
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(neg, n, replace=False), rng.choice(pos, n, replace=False)])
    train, test = train_test_split(chosen, test_size=test_fraction, random_state=seed,
                                   stratify=y[chosen])
    return ProbeSplit(np.sort(train), np.sort(test), y[np.sort(train)], y[np.sort(test)])


def top_features(f_train_NF: np.ndarray, y_train: np.ndarray, k: int) -> np.ndarray:
    """The k features of largest |class-mean difference| on the train part, largest first."""
    diff_F = f_train_NF[y_train == 1].mean(axis=0) - f_train_NF[y_train == 0].mean(axis=0)
    k = min(k, diff_F.shape[0])
    order = np.argsort(-np.abs(diff_F), kind="stable")
    return order[:k]


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, seed: int) -> float:
    """Test accuracy of a logistic regression on standardised inputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def probe_task(f_NF: Tensor, acts_ND: Tensor, split: ProbeSplit, ks: list[int],
               seed: int) -> dict[str, Any]:
    """One task's sparse probes (per k: accuracy and the features used) and raw probe."""
    f_train = f_NF[split.train].numpy()
    f_test = f_NF[split.test].numpy()
    by_k = {}
    for k in ks:
        ids = top_features(f_train, split.y_train, k)
        acc = probe_accuracy(f_train[:, ids], split.y_train, f_test[:, ids], split.y_test, seed)
        by_k[str(k)] = {"accuracy": acc, "features": ids.tolist()}
    raw = probe_accuracy(acts_ND[split.train].numpy(), split.y_train,
                         acts_ND[split.test].numpy(), split.y_test, seed)
    return {"n_per_class": int(len(split.train) + len(split.test)) // 2,
            "n_train": int(len(split.train)), "n_test": int(len(split.test)),
            "sae": by_k, "raw_accuracy": raw}
