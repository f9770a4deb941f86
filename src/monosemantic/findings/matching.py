"""Matching the features of a larger SAE to a smaller one's, and classifying them.

Every feature i of the larger SAE gets a *parent*: the feature j of the smaller SAE most
similar to it, by decoder cosine (cos of the decoder rows) or by activation correlation
(Pearson r of the codes on the same tokens). With the lower threshold `child` and the higher
`persist`, a parent's *children* are the features whose parent it is with similarity ≥ child,
and each feature of the smaller SAE is

- split:   2 or more children;
- persist: one child, with similarity ≥ persist;
- drift:   one child, with similarity in [child, persist) (still there, but changed);
- vanish:  no child;

and each feature of the larger SAE is `appear` (no parent with similarity ≥ child) or the
child of a split, persisting or drifting parent. Only features that fire on at least one of
the measured tokens take part (on either side): a silent feature has no activation to
correlate, and its decoder row is not a learned direction. The shares of each side sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

SMALL_CLASSES = ("split", "persist", "drift", "vanish")
LARGE_CLASSES = ("appear", "child_of_split", "child_of_persist", "child_of_drift")


def unit_rows(W_FD: Tensor) -> Tensor:
    """Rows scaled to unit norm (float32; a zero row stays zero)."""
    W = W_FD.detach().float().cpu()
    return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def top_cosines(W_large_LD: Tensor, W_small_SD: Tensor, n_top: int,
                alive_S: Tensor | None = None, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """For each large feature, the `n_top` small features of largest decoder cosine, best
    first: (ids [F_large, n], cosines [F_large, n]). Silent small features (`alive_S` False)
    are never chosen unless fewer than `n_top` are alive (their cosine is then -inf).
    Blocked: memory 4·chunk·F_small bytes."""
    large, small = unit_rows(W_large_LD), unit_rows(W_small_SD)
    n_top = min(n_top, small.shape[0])
    ids, cosines = [], []
    for lo in range(0, large.shape[0], chunk):
        cos_CS = large[lo:lo + chunk] @ small.T
        if alive_S is not None:
            cos_CS[:, ~alive_S.cpu()] = -float("inf")
        best = cos_CS.topk(n_top, dim=1)
        ids.append(best.indices)
        cosines.append(best.values)
    return torch.cat(ids), torch.cat(cosines)


def nearest_twin_cosines(W_FD: Tensor, alive_F: np.ndarray) -> np.ndarray:
    """For each firing feature (`alive_F`), the largest decoder cosine to another firing
    feature of the same SAE; empty with fewer than 2 firing. Near 1 for most features means
    the dictionary holds many copies of few directions (e.g. collapsed onto the mean of the
    activations), and any larger SAE's feature then finds a parent among the copies."""
    W = W_FD[torch.as_tensor(np.flatnonzero(alive_F), dtype=torch.long)]
    if W.shape[0] < 2:
        return np.empty(0)
    _, cos = top_cosines(W, W, 2)
    # The best match of a row is itself (cosine 1), unless an exact copy ties with it: either
    # way the second column is the nearest other feature.
    return cos[:, 1].double().numpy()


def pair_cosines(W_large_LD: Tensor, W_small_SD: Tensor, i_N: np.ndarray,
                 j_N: np.ndarray) -> np.ndarray:
    """Decoder cosine of each pair (large i_N[n], small j_N[n])."""
    i_t, j_t = torch.as_tensor(i_N, dtype=torch.long), torch.as_tensor(j_N, dtype=torch.long)
    a, b = unit_rows(W_large_LD[i_t]), unit_rows(W_small_SD[j_t])
    return (a * b).sum(dim=1).double().numpy()


@dataclass
class Matched:
    """Each large feature's parent by one similarity: `parent_L` (-1: none, e.g. the feature
    is silent) and the similarity `score_L` (-inf with no parent)."""

    parent_L: np.ndarray
    score_L: np.ndarray


def best_parent(ids_LC: Tensor, score_LC: Tensor, alive_L: np.ndarray | None = None) -> Matched:
    """The candidate of highest score per row (NaN scores never win); silent large features
    (`alive_L` False) and rows without a finite score get no parent."""
    score = torch.nan_to_num(score_LC.double(), nan=-float("inf"))
    best, col = score.max(dim=1)
    parent = ids_LC.long().gather(1, col[:, None]).squeeze(1).numpy().copy()
    best = best.numpy().copy()
    none = ~np.isfinite(best)
    if alive_L is not None:
        none |= ~alive_L
    parent[none], best[none] = -1, -np.inf
    return Matched(parent, best)


@dataclass
class Classes:
    """Each feature's class: `small_S` indexes SMALL_CLASSES, `large_L` LARGE_CLASSES; -1 for
    silent features (not classified)."""

    small_S: np.ndarray
    large_L: np.ndarray
    n_children_S: np.ndarray

    def shares(self) -> dict[str, Any]:
        """Counts and shares per class of each side (over the classified features)."""
        return {"small": _shares(self.small_S, SMALL_CLASSES),
                "large": _shares(self.large_L, LARGE_CLASSES)}


def classify(match: Matched, alive_S: np.ndarray, alive_L: np.ndarray,
             child: float, persist: float) -> Classes:
    """The classes of both sides from the large features' parents (module docstring)."""
    if not child <= persist:
        raise ValueError(f"the child threshold {child} exceeds the persist threshold {persist}")
    n_small = len(alive_S)
    is_child_L = alive_L & (match.parent_L >= 0) & (match.score_L >= child)
    parents = match.parent_L[is_child_L]
    n_children_S = np.bincount(parents, minlength=n_small)
    best_S = np.full(n_small, -np.inf)
    np.maximum.at(best_S, parents, match.score_L[is_child_L])
    small_S = np.full(n_small, SMALL_CLASSES.index("vanish"))
    small_S[n_children_S == 1] = SMALL_CLASSES.index("drift")
    small_S[(n_children_S == 1) & (best_S >= persist)] = SMALL_CLASSES.index("persist")
    small_S[n_children_S >= 2] = SMALL_CLASSES.index("split")
    small_S[~alive_S] = -1
    large_L = np.full(len(alive_L), LARGE_CLASSES.index("appear"))
    parent_class = small_S[parents]  # children only have alive parents
    large_L[is_child_L] = parent_class + 1  # split -> child_of_split, ... (same order)
    large_L[~alive_L] = -1
    return Classes(small_S, large_L, n_children_S)


def _shares(classes: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    counted = classes[classes >= 0]
    counts = np.bincount(counted, minlength=len(names))
    total = int(counts.sum())
    return {"n": total, "silent": int((classes < 0).sum()),
            "counts": {name: int(c) for name, c in zip(names, counts)},
            "shares": {name: (float(c) / total if total else None)
                       for name, c in zip(names, counts)}}
