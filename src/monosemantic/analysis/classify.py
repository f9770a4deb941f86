"""Linear-classifier search: the features that carry a sparse logistic regression on labelled texts.

Each text becomes a vector of its feature activations, the maximum over its tokens (and with
`mean`, also the mean over its tokens: 2F columns). Columns are divided by their maximum over
the training texts, so every column lies in [0, 1] and the L1 penalty treats features of
different scales alike; coefficients are per unit of that scaled activation. The model,
mean binary cross-entropy + l1 · ||w||₁ (intercept not penalised), is fitted in torch by FISTA
(accelerated proximal gradient, step 1 / L with L = σ_max([X 1])² / 4n, the Lipschitz constant
of the loss gradient), so no extra dependency is needed and it runs on the SAE's device.
A stratified held-out split measures whether the selected features generalise.

`monosemantic classify RUN --data FILE.jsonl` reads lines `{"text": ..., "label": 0 or 1}`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from monosemantic.console import say
from monosemantic.errors import UserError

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel
    from monosemantic.sae import SAE

STATS = ("max", "mean")


@dataclass
class ClassifierResult:
    """The fitted sparse classifier and the features carrying it."""

    features: list[tuple[int, float]]
    """(feature, coefficient) by decreasing |coefficient| (a feature's largest-|.| coefficient
    over its columns when `mean` is on); positive = evidence for label 1."""
    train_accuracy: float
    heldout_accuracy: float | None
    """Accuracy on the held-out texts (None when none were held out)."""
    terms: list[tuple[int, str, float]] = field(default_factory=list)
    """Every nonzero coefficient as (feature, statistic "max" or "mean", coefficient)."""
    intercept: float = 0.0
    n_train: int = 0
    n_heldout: int = 0
    l1: float = 0.0
    iterations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def text_feature_matrix(lm: LoadedModel, sae: SAE, hook: str, texts: list[str],
                        mean: bool = False) -> Tensor:
    """[N, F] of each text's max activation over its tokens ([N, 2F]: max then mean)."""
    from monosemantic.analysis.inspect import text_features

    rows = []
    for text in texts:
        f_SF = text_features(lm, sae, hook, text).f_SF
        if f_SF.shape[0] == 0:
            raise UserError(f"text {text[:60]!r} has no tokens besides special ones")
        parts = [f_SF.max(dim=0).values] + ([f_SF.mean(dim=0)] if mean else [])
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def fit_l1_logistic(X_NC: Tensor, y_N: Tensor, l1: float, max_iter: int = 5000,
                    tol: float = 1e-6) -> tuple[Tensor, float, int]:
    """(w [C], intercept, iterations) minimising mean BCE(X w + b, y) + l1·||w||₁ by FISTA."""
    X_NC, y_N = X_NC.float(), y_N.float().to(X_NC.device)
    n, c = X_NC.shape
    ones_N1 = torch.ones(n, 1, device=X_NC.device)
    sigma = float(torch.linalg.matrix_norm(torch.cat([X_NC, ones_N1], dim=1), ord=2))
    step = 4.0 * n / max(sigma ** 2, 1e-12)
    w_C, b = torch.zeros(c, device=X_NC.device), torch.zeros((), device=X_NC.device)
    v_C, vb, t = w_C.clone(), b.clone(), 1.0
    for it in range(1, max_iter + 1):
        resid_N = torch.sigmoid(X_NC @ v_C + vb) - y_N
        grad_C, grad_b = X_NC.T @ resid_N / n, resid_N.mean()
        z_C = v_C - step * grad_C
        w_new = torch.sign(z_C) * (z_C.abs() - step * l1).clamp(min=0)
        b_new = vb - step * grad_b
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = (t - 1) / t_new
        v_C = w_new + momentum * (w_new - w_C)
        vb = b_new + momentum * (b_new - b)
        change = float(torch.maximum((w_new - w_C).abs().max(), (b_new - b).abs()))
        w_C, b, t = w_new, b_new, t_new
        if change < tol:
            return w_C.cpu(), float(b), it
    return w_C.cpu(), float(b), max(max_iter, 0)


def stratified_split(labels_N: Tensor, heldout: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, held-out indices): `heldout` of each class, at least one train text."""
    gen = torch.Generator().manual_seed(seed)
    train, held = [], []
    for cls in (0, 1):
        idx = (labels_N == cls).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = min(round(heldout * len(idx)), len(idx) - 1)
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def fit_classifier(X_NC: Tensor, labels: list[int], *, l1: float, top: int, n_features: int,
                   heldout: float = 0.25, seed: int = 0) -> ClassifierResult:
    """Split, scale, fit and rank on a precomputed text x column matrix (columns: F max
    activations, then optionally F means)."""
    y_N = torch.tensor([int(v) for v in labels])
    if set(y_N.tolist()) != {0, 1}:
        raise UserError("labels must be 0 and 1, with at least one text of each")
    if not 0 <= heldout < 1:
        raise UserError(f"heldout must be in [0, 1), got {heldout}")
    if l1 < 0:
        raise UserError(f"l1 must be >= 0, got {l1}")
    train_T, held_H = stratified_split(y_N, heldout, seed)
    scale_C = X_NC[train_T].abs().max(dim=0).values
    scale_C = torch.where(scale_C > 0, scale_C, torch.ones_like(scale_C))
    Xs_NC = X_NC / scale_C
    w_C, b, iters = fit_l1_logistic(Xs_NC[train_T], y_N[train_T], l1)

    def accuracy(idx: Tensor) -> float:
        pred_N = (Xs_NC[idx].float() @ w_C + b) > 0
        return float((pred_N.long() == y_N[idx]).float().mean())

    terms = [(int(c) % n_features, STATS[int(c) // n_features], float(w_C[c]))
             for c in w_C.nonzero().squeeze(1)]
    terms.sort(key=lambda t: (-abs(t[2]), t[0], t[1]))
    best: dict[int, float] = {}
    for feat, _stat, coef in terms:
        best.setdefault(feat, coef)  # terms are sorted: the first is the largest |coef|
    return ClassifierResult(
        features=list(best.items())[:top], train_accuracy=accuracy(train_T),
        heldout_accuracy=accuracy(held_H) if len(held_H) else None, terms=terms,
        intercept=b, n_train=len(train_T), n_heldout=len(held_H), l1=l1, iterations=iters)


def classifier_search(lm: LoadedModel, sae: SAE, hook: str, texts: list[str],
                      labels: list[int], *, l1: float, top: int, mean: bool = False,
                      heldout: float = 0.25, seed: int = 0) -> ClassifierResult:
    """Fit an L1 logistic regression of `labels` on the texts' feature activations."""
    if len(texts) != len(labels):
        raise UserError(f"{len(texts)} texts but {len(labels)} labels")
    X_NC = text_feature_matrix(lm, sae, hook, texts, mean=mean)
    return fit_classifier(X_NC, labels, l1=l1, top=top, n_features=int(sae.cfg.n_features),
                          heldout=heldout, seed=seed)


@dataclass
class ClassifyConfig:
    """Find the features that carry a sparse logistic regression on labelled texts."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder)."""
    data: Path
    """A .jsonl file, one {"text": ..., "label": 0 or 1} per line."""
    l1: float = 0.01
    """L1 penalty on the coefficients (larger: fewer features)."""
    top: int = 20
    """Features to list."""
    mean: bool = False
    """Also use each feature's mean activation over the text's tokens (besides the max)."""
    heldout: float = 0.25
    """Fraction of each class held out to measure accuracy."""
    seed: int = 0
    """Seed of the held-out split."""
    out: Path | None = None
    """Write the result as JSON here too."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model: str | None = None
    """Model spec to load instead of the one recorded with the SAE."""

    def __post_init__(self) -> None:
        self.run, self.data = Path(self.run), Path(self.data)
        if self.out is not None:
            self.out = Path(self.out)


def read_labelled(path: Path) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels from a .jsonl file (clear errors on malformed lines)."""
    if not path.is_file():
        raise UserError(f"data file {path} not found")
    texts, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text, label = rec["text"], rec["label"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise UserError(f"{path}:{n}: expected {{\"text\": ..., \"label\": 0 or 1}} "
                            f"({err})") from err
        if not isinstance(text, str) or label not in (0, 1, True, False):
            raise UserError(f"{path}:{n}: text must be a string and label 0 or 1")
        texts.append(text)
        labels.append(int(label))
    return texts, labels


def run_classify(cfg: ClassifyConfig) -> ClassifierResult:
    """Read the data, fit, print the features and accuracies (and save JSON with --out)."""
    from monosemantic.fsutil import atomic_write_text
    from monosemantic.runs import RunDir

    texts, labels = read_labelled(cfg.data)
    lm, sae, hook = RunDir.open(cfg.run).load(cfg.device, cfg.model)
    result = classifier_search(lm, sae, hook, texts, labels, l1=cfg.l1, top=cfg.top,
                               mean=cfg.mean, heldout=cfg.heldout, seed=cfg.seed)
    held = ("n/a" if result.heldout_accuracy is None else f"{result.heldout_accuracy:.1%}")
    say(f"{len(result.terms)} nonzero coefficient(s) at l1={cfg.l1}; accuracy train "
        f"{result.train_accuracy:.1%} ({result.n_train}), held out {held} ({result.n_heldout})")
    for feat, coef in result.features:
        say(f"  #{feat:<7} {coef:+.4f}")
    if cfg.out is not None:
        atomic_write_text(cfg.out, json.dumps(result.to_dict(), indent=2))
        say(f"wrote {cfg.out}")
    return result
