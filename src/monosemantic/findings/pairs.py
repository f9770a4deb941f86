"""Match the features of size pairs of a series, by decoder cosine and by activation
correlation on the same held-out tokens, in one pass that encodes every SAE once per batch.

Correlations are accumulated for every pair of features while F_large × F_small stays within
`max_dense_pairs`; beyond it, only for each large feature's `n_candidates` nearest small
features by decoder cosine (so its decoder parent is always among them, and its correlation
parent is the best correlated of them: an approximation, recorded in the output as
`correlation_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from monosemantic.errors import UserError
from monosemantic.findings.correlation import PairMoments
from monosemantic.findings.holdout import Holdout, HoldoutOptions, encoded_batches
from monosemantic.findings.matching import (
    Classes,
    Matched,
    best_parent,
    classify,
    pair_cosines,
    top_cosines,
)

if TYPE_CHECKING:
    from monosemantic.sae import SAE

MEASURES = ("decoder", "activation")
"""The two similarities: decoder cosine and activation correlation."""


@dataclass
class MatchOptions:
    """How features of two sizes are matched and classified."""

    pairs: Literal["consecutive", "all"] = "consecutive"
    """Size pairs compared: consecutive sizes (256→512, 512→1024, ...) or every pair of
    sizes (the family trees always follow consecutive sizes)."""
    child_threshold: float = 0.5
    """A feature of the larger SAE is a child of its most similar feature of the smaller one
    when their similarity (decoder cosine, or activation correlation) is at least this; with 2
    or more children the smaller feature splits. (A direction split evenly in two has cosine
    1/√2 ≈ 0.71 to each half.)"""
    persist_threshold: float = 0.8
    """A feature of the smaller SAE with a single child persists when that child's similarity
    is at least this, and drifts when it lies between the two thresholds."""
    n_candidates: int = 16
    """Beyond --max-dense-pairs, correlations are computed only with each larger-SAE feature's
    N nearest smaller-SAE features by decoder cosine."""
    max_dense_pairs: int = 1 << 24
    """Correlate every pair of features while F_large × F_small is at most this (8 bytes per
    pair); candidates beyond."""


@dataclass
class PairResult:
    """Two sizes matched: parents, similarities and classes of both measures."""

    small: int
    """Index of the smaller SAE in the series' list of sizes."""
    large: int
    n_small: int
    n_large: int
    fires_S: np.ndarray
    fires_L: np.ndarray
    correlation_pairs: str
    """"all" or "top-N by decoder cosine"."""
    matched: dict[str, Matched] = field(default_factory=dict)
    classes: dict[str, Classes] = field(default_factory=dict)
    cross: dict[str, np.ndarray] = field(default_factory=dict)
    """The other measure's similarity of each large feature to its parent by this measure
    ("decoder": correlation to the decoder parent; "activation": cosine to the correlation
    parent); NaN without a parent (or outside the candidates)."""

    def summary(self, sizes: list[int], names: list[str]) -> dict[str, Any]:
        """The pair's entry of splitting.json (no per-feature arrays)."""
        return {"small": {"n_features": sizes[self.small], "run": names[self.small]},
                "large": {"n_features": sizes[self.large], "run": names[self.large]},
                "correlation_pairs": self.correlation_pairs,
                "by": {m: self.classes[m].shares() for m in MEASURES},
                "same_index": {m: self.same_index_share(m) for m in MEASURES}}

    def same_index_share(self, measure: str) -> float | None:
        """Share of the children that have their parent's index: near 1 when the two runs
        started from the same initial directions (one seed for every size) and training did
        not move them far; then persistence partly measures the shared start."""
        is_child = self.classes[measure].large_L > 0
        if not is_child.any():
            return None
        ids = np.flatnonzero(is_child)
        return float((self.matched[measure].parent_L[ids] == ids).mean())


def size_pairs(n_sizes: int, which: str) -> list[tuple[int, int]]:
    """(small, large) index pairs: consecutive, or every pair."""
    if which == "consecutive":
        return [(i, i + 1) for i in range(n_sizes - 1)]
    return [(i, j) for i in range(n_sizes) for j in range(i + 1, n_sizes)]


def match_pairs(saes: list[SAE], pairs: list[tuple[int, int]], holdout: Holdout,
                hopts: HoldoutOptions, mopts: MatchOptions) -> list[PairResult]:
    """Each pair matched on the held-out tokens (module docstring)."""
    check_options(mopts)
    decoders = [sae.W_dec_FD.detach().float().cpu() for sae in saes]
    fires = [torch.zeros(d.shape[0], dtype=torch.int64) for d in decoders]
    moments: dict[tuple[int, int], PairMoments] = {}
    for s, big in pairs:
        n_s, n_l = decoders[s].shape[0], decoders[big].shape[0]
        cand = None if n_s * n_l <= mopts.max_dense_pairs else \
            top_cosines(decoders[big], decoders[s], mopts.n_candidates)[0]
        moments[(s, big)] = PairMoments(n_l, n_s, cand)
    for codes in encoded_batches(saes, holdout, hopts, "matching sizes"):
        for i, c in enumerate(codes):
            fires[i] += c.fires_F().cpu()
        for (s, big), m in moments.items():
            m.update(codes[big], codes[s])
    alive = [(f > 0).numpy() for f in fires]
    return [_result(s, big, decoders, alive, fires, moments[(s, big)], mopts)
            for s, big in pairs]


def check_options(mopts: MatchOptions) -> None:
    """UserError for thresholds out of order or out of [-1, 1], or bad candidate limits."""
    if not -1 <= mopts.child_threshold <= mopts.persist_threshold <= 1:
        raise UserError(f"need -1 ≤ --child-threshold ({mopts.child_threshold}) ≤ "
                        f"--persist-threshold ({mopts.persist_threshold}) ≤ 1")
    if mopts.n_candidates < 1 or mopts.max_dense_pairs < 0:
        raise UserError("--n-candidates must be at least 1 and --max-dense-pairs at least 0")


def _result(s: int, big: int, decoders: list[torch.Tensor], alive: list[np.ndarray],
            fires: list[torch.Tensor], moments: PairMoments, mopts: MatchOptions) -> PairResult:
    W_s, W_l = decoders[s], decoders[big]
    ids, cos = top_cosines(W_l, W_s, 1, torch.from_numpy(alive[s]))
    by_decoder = best_parent(ids, cos, alive[big])
    # A silent small feature has no variance, so a NaN correlation: never a parent.
    by_activation = best_parent(moments.columns(), moments.correlations(), alive[big])
    result = PairResult(
        s, big, W_s.shape[0], W_l.shape[0], fires[s].numpy(), fires[big].numpy(),
        "all" if moments.cand_LC is None else f"top-{moments.cand_LC.shape[1]} by decoder cosine")
    result.matched = {"decoder": by_decoder, "activation": by_activation}
    result.classes = {m: classify(result.matched[m], alive[s], alive[big],
                                  mopts.child_threshold, mopts.persist_threshold)
                      for m in MEASURES}
    result.cross = {"decoder": _other(by_decoder, lambda i, j: moments.correlation_at(i, j)),
                    "activation": _other(by_activation,
                                         lambda i, j: pair_cosines(W_l, W_s, i, j))}
    return result


def _other(match: Matched, measure: Callable[[np.ndarray, np.ndarray], np.ndarray]
           ) -> np.ndarray:
    """`measure` of each large feature and its parent; NaN without a parent."""
    out = np.full(len(match.parent_L), np.nan)
    has = np.flatnonzero(match.parent_L >= 0)
    if len(has):
        out[has] = measure(has, match.parent_L[has])
    return out
