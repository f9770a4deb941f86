"""Multi-prompt filtering (Scaling Monosemanticity's discovery method): the features active on
every one of a set of positive prompts and on none of a set of negative prompts.

A feature's activation on a prompt is its maximum over the prompt's tokens (BOS and other
special tokens left out, as in `inspect`). With `relative_to_max` (each feature's maximum
activation over the analysed corpus, from the feature database) the threshold is a fraction of
that maximum, so one threshold suits features of very different scales; without it the
threshold is a raw activation. `monosemantic filter RUN --positive ... --negative ...` prints
the hits.

The linear-classifier search lives in `monosemantic.analysis.classify`; it is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from monosemantic.analysis.classify import ClassifierResult, classifier_search
from monosemantic.analysis.inspect import text_features
from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel
    from monosemantic.sae import SAE

__all__ = ["ClassifierResult", "FilterConfig", "FilterHit", "classifier_search",
           "filter_features", "prompt_max_acts", "run_filter"]


@dataclass
class FilterHit:
    """A feature that passed the filter, with its raw activations (max over a prompt's tokens)."""

    feature: int
    min_positive: float
    """Smallest over the positive prompts."""
    max_negative: float
    """Largest over the negative prompts (0 when there are none)."""
    mean_positive: float
    """Mean over the positive prompts."""


@torch.no_grad()
def prompt_max_acts(lm: LoadedModel, sae: SAE, hook: str, prompts: list[str]) -> Tensor:
    """[P, F]: each feature's maximum activation over each prompt's tokens."""
    rows = []
    for text in prompts:
        tf = text_features(lm, sae, hook, text)
        if not tf.tokens:
            raise UserError(f"prompt {text!r} has no tokens besides special ones")
        rows.append(tf.f_SF.max(dim=0).values)
    return torch.stack(rows) if rows else torch.zeros(0, int(sae.cfg.n_features))


def select_features(pos_PF: Tensor, neg_NF: Tensor, threshold_F: Tensor, top: int
                    ) -> list[FilterHit]:
    """The filter on precomputed per-prompt maxima (> threshold on all positives, on no
    negative), sorted by the smallest positive activation, strongest first."""
    passed_F = (pos_PF > threshold_F).all(dim=0)
    if neg_NF.shape[0]:
        passed_F &= ~(neg_NF > threshold_F).any(dim=0)
        max_neg_F = neg_NF.max(dim=0).values
    else:
        max_neg_F = torch.zeros(pos_PF.shape[1])
    min_pos_F = pos_PF.min(dim=0).values
    ids = passed_F.nonzero().squeeze(1)
    # Ties broken by feature id so the order is deterministic.
    ids = ids[torch.sort(-min_pos_F[ids], stable=True).indices][:top]
    mean_pos_F = pos_PF.mean(dim=0)
    return [FilterHit(int(i), float(min_pos_F[i]), float(max_neg_F[i]), float(mean_pos_F[i]))
            for i in ids]


def filter_features(lm: LoadedModel, sae: SAE, hook: str, positive: list[str],
                    negative: list[str], *, threshold: float = 0.1,
                    relative_to_max: Tensor | None = None, top: int = 20) -> list[FilterHit]:
    """Features whose max activation over a prompt is > threshold on EVERY positive prompt and
    on NO negative prompt; threshold × the feature's maximum when `relative_to_max` [F] is given
    (features whose recorded maximum is 0 then compare with the raw threshold)."""
    if not positive:
        raise UserError("give at least one positive prompt")
    if threshold < 0:
        raise UserError(f"threshold must be >= 0, got {threshold}")
    n_feat = int(sae.cfg.n_features)
    threshold_F = torch.full((n_feat,), float(threshold))
    if relative_to_max is not None:
        max_F = relative_to_max.float().cpu()
        if max_F.shape != (n_feat,):
            raise UserError(f"relative_to_max has shape {tuple(max_F.shape)}; the SAE has "
                            f"{n_feat} features (is the feature database of another SAE?)")
        threshold_F = torch.where(max_F > 0, threshold * max_F, threshold_F)
    pos_PF = prompt_max_acts(lm, sae, hook, positive)
    neg_NF = prompt_max_acts(lm, sae, hook, negative)
    return select_features(pos_PF, neg_NF, threshold_F, top)


@dataclass
class FilterConfig:
    """Find the features active on all the positive prompts and on none of the negative ones."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder); features.sqlite once analysed."""
    positive: list[str] = field(default_factory=list)
    """Prompts every hit must fire on (quote each)."""
    negative: list[str] = field(default_factory=list)
    """Prompts no hit may fire on."""
    threshold: float = 0.1
    """Activation a feature must exceed to count as firing on a prompt: a fraction of its maximum
    from the feature database when `relative` is on and the database exists, else raw."""
    relative: bool = True
    """Read the threshold as a fraction of each feature's maximum activation (needs
    RUN/features.sqlite; without it the threshold is raw, and a note says so)."""
    top: int = 20
    """Hits to print."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model: str | None = None
    """Model spec to load instead of the one recorded with the SAE."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)


def run_filter(cfg: FilterConfig, lm: LoadedModel | None = None) -> list[FilterHit]:
    """Print the hits of `cfg`'s filter (with relative activations when the database exists);
    `lm`: the run's model already loaded, else loaded here."""
    if not cfg.positive:
        raise UserError("give at least one --positive prompt")
    run = RunDir.open(cfg.run)
    max_F = run.max_act_F() if cfg.relative else None
    if cfg.relative and max_F is None:
        say(f"note: {run.path} has no feature database (run `monosemantic analyze`): "
            f"the threshold {cfg.threshold} is a raw activation")
    lm, sae, hook = run.load(cfg.device, cfg.model, lm)
    hits = filter_features(lm, sae, hook, cfg.positive, cfg.negative, threshold=cfg.threshold,
                           relative_to_max=max_F, top=cfg.top)
    say(format_hits(hits, max_F, len(cfg.positive), len(cfg.negative)))
    return hits


def format_hits(hits: list[FilterHit], max_F: Tensor | None, n_pos: int, n_neg: int) -> str:
    """A table of the hits; with `max_F`, each activation also as a share of the maximum."""
    head = (f"{len(hits)} feature(s) fire on all {n_pos} positive and none of {n_neg} "
            "negative prompts")
    if not hits:
        return head + " (try a lower --threshold or fewer prompts)"
    lines = [head, f"{'feature':>8} {'min pos':>10} {'mean pos':>10} {'max neg':>10}"]
    for h in hits:
        rel = ""
        if max_F is not None and float(max_F[h.feature]) > 0:
            m = float(max_F[h.feature])
            rel = (f"   ({h.min_positive / m:.0%} / {h.mean_positive / m:.0%} / "
                   f"{h.max_negative / m:.0%} of max {m:.3g})")
        lines.append(f"{h.feature:>8} {h.min_positive:>10.4g} {h.mean_positive:>10.4g} "
                     f"{h.max_negative:>10.4g}{rel}")
    return "\n".join(lines)
