"""The loss-minimising learning rate of each (features, tokens) cell swept over several lrs."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from monosemantic.laws.points import Point


@dataclass(frozen=True)
class LrCell:
    """The best learning rate found at one size and token budget."""

    n_features: int
    tokens: int
    flops: float
    lr: float
    lrs_tried: int
    interior: bool
    """True when the best lr had a tried lr on both sides (else it sits on the lr grid's edge
    and the true optimum may lie beyond it)."""


def lr_cells(points: list[Point]) -> list[LrCell]:
    """Cells (features, tokens) with at least 2 distinct lrs, each with its best lr.

    With 3 or more lrs and an interior minimum, the parabola through the best lr and its two
    neighbours (loss against log lr) places the optimum between the grid points."""
    by_cell: dict[tuple[int, int], dict[float, list[float]]] = defaultdict(
        lambda: defaultdict(list))
    flops: dict[tuple[int, int], list[float]] = defaultdict(list)
    for p in points:
        by_cell[(p.n_features, p.tokens)][p.lr].append(p.loss)
        flops[(p.n_features, p.tokens)].append(p.flops)
    cells = []
    for key, per_lr in sorted(by_cell.items()):
        if len(per_lr) < 2:
            continue
        lrs = np.array(sorted(per_lr))
        losses = np.array([np.mean(per_lr[lr]) for lr in lrs])  # seeds averaged
        i = int(np.argmin(losses))
        interior = 0 < i < len(lrs) - 1
        lr = _vertex(np.log(lrs[i - 1:i + 2]), losses[i - 1:i + 2]) if interior else None
        cells.append(LrCell(key[0], key[1], float(np.median(flops[key])),
                            float(lrs[i]) if lr is None else lr, len(lrs), interior))
    return cells


def _vertex(log_lr: np.ndarray, loss: np.ndarray) -> float | None:
    """exp of the parabola's vertex through three points, kept between the outer two."""
    a, b, _ = np.polyfit(log_lr, loss, 2)
    if a <= 0:
        return None
    x = float(np.clip(-b / (2 * a), log_lr[0], log_lr[-1]))
    return math.exp(x)
