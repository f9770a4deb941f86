"""The probes of the absorption metric (scikit-learn logistic regression): the ground-truth
first-letter probe on raw activations, and k-sparse probing on SAE features, which picks a
letter's main features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from monosemantic.errors import UserError


def _logistic_regression(seed: int) -> Any:
    """A balanced logistic regression (the letter is rare among the words)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise UserError("the absorption metric needs scikit-learn: "
                        "pip install 'monosemantic[analysis]'") from None
    return LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)


@dataclass
class LetterProbe:
    """A linear probe "starts with the letter" on raw activations, in raw activation units."""

    w_D: np.ndarray
    """Weights: score = x · w_D + bias; the probe direction is w_D / |w_D|."""
    bias: float
    """Intercept."""
    accuracy: float
    """Accuracy on the test words."""
    precision: float
    """Precision on the test words (positive class: the letter)."""
    recall: float
    """Recall on the test words."""
    f1: float
    """F1 on the test words."""
    test_scores_W: np.ndarray
    """score of each test word (> 0: the probe says it starts with the letter)."""


def fit_letter_probe(train_X_WD: np.ndarray, train_y_W: np.ndarray, test_X_WD: np.ndarray,
                     test_y_W: np.ndarray, seed: int) -> LetterProbe:
    """Balanced logistic regression on standardized activations, mapped back to raw units (so
    the direction lives where the SAE's decoder rows do). Both classes must occur in train."""
    mean_D = train_X_WD.mean(axis=0)
    std_D = train_X_WD.std(axis=0)
    std_D = np.where(std_D > 0, std_D, 1.0)
    # Gemma's residual stream has a few huge coordinates: lbfgs converges on standardized inputs.
    clf = _logistic_regression(seed)
    clf.fit((train_X_WD - mean_D) / std_D, train_y_W)
    w_D = clf.coef_[0] / std_D
    bias = float(clf.intercept_[0] - mean_D @ w_D)
    scores_W = test_X_WD @ w_D + bias
    return LetterProbe(w_D=w_D, bias=bias, test_scores_W=scores_W,
                       **_binary_scores(test_y_W, scores_W > 0))


def _binary_scores(y_W: np.ndarray, pred_W: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(pred_W & y_W))
    n_pred, n_pos = int(pred_W.sum()), int(y_W.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float(np.mean(pred_W == y_W)), "precision": precision,
            "recall": recall, "f1": f1}


@dataclass
class SparseProbing:
    """k-sparse probing of one letter on SAE features."""

    ranked: list[int]
    """Features in order of class-mean difference (train words), the first `max_k`."""
    f1_by_k: list[float]
    """Test F1 of the k-sparse probe for k = 1, 2, ... (up to the k that stopped the growth)."""
    main_features: list[int]
    """The letter's main features: the first k of `ranked`, k chosen by `grow_main_features`."""


def rank_by_mean_difference(train_codes_WF: np.ndarray, train_y_W: np.ndarray,
                            max_k: int) -> list[int]:
    """The `max_k` features with the largest mean code on the letter's words minus the mean on
    the other words (ties: lower id first)."""
    diff_F = train_codes_WF[train_y_W].mean(axis=0) - train_codes_WF[~train_y_W].mean(axis=0)
    return [int(i) for i in np.argsort(-diff_F, kind="stable")[:max_k]]


def grow_main_features(f1_of_k: Any, max_k: int, f1_jump: float) -> tuple[int, list[float]]:
    """The k of the main features and the F1s computed: k = 1 is always taken; k grows by one
    while F1(k + 1) > F1(k) + f1_jump (SAEBench's feature-splitting rule), up to `max_k`."""
    f1s = [float(f1_of_k(1))]
    k = 1
    while k < max_k:
        f1s.append(float(f1_of_k(k + 1)))
        if f1s[-1] <= f1s[k - 1] + f1_jump:
            break
        k += 1
    return k, f1s


def k_sparse_probing(train_codes_WF: np.ndarray, train_y_W: np.ndarray,
                     test_codes_WF: np.ndarray, test_y_W: np.ndarray, max_k: int,
                     f1_jump: float, seed: int) -> SparseProbing:
    """Rank features by class-mean difference, fit a balanced logistic regression on the top k
    features' codes for growing k, and keep the k that `grow_main_features` chooses."""
    ranked = rank_by_mean_difference(train_codes_WF, train_y_W, max_k)

    def f1_of_k(k: int) -> float:
        cols = ranked[:k]
        clf = _logistic_regression(seed)
        clf.fit(train_codes_WF[:, cols], train_y_W)
        pred_W = clf.decision_function(test_codes_WF[:, cols]) > 0
        return _binary_scores(test_y_W, pred_W)["f1"]

    k, f1s = grow_main_features(f1_of_k, min(max_k, len(ranked)), f1_jump)
    return SparseProbing(ranked=ranked, f1_by_k=f1s, main_features=ranked[:k])
