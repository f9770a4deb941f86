"""The loss-minimising learning rate of each (features, tokens) cell swept over several lrs."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

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
    edge: str | None = None
    """"largest" or "smallest" when the best lr is that end of the lrs tried, else None."""


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
        edge = None if interior else ("smallest" if i == 0 else "largest")
        lr = _vertex(np.log(lrs[i - 1:i + 2]), losses[i - 1:i + 2]) if interior else None
        cells.append(LrCell(key[0], key[1], float(np.median(flops[key])),
                            float(lrs[i]) if lr is None else lr, len(lrs), interior, edge))
    return cells


def _vertex(log_lr: np.ndarray, loss: np.ndarray) -> float | None:
    """exp of the parabola's vertex through three points, kept between the outer two."""
    a, b, _ = np.polyfit(log_lr, loss, 2)
    if a <= 0:
        return None
    x = float(np.clip(-b / (2 * a), log_lr[0], log_lr[-1]))
    return math.exp(x)


def edge_counts(cells: list[LrCell]) -> dict[str, int]:
    """How many of `cells` have their best lr at the largest or smallest lr tried."""
    return {"cells": len(cells), "largest": sum(c.edge == "largest" for c in cells),
            "smallest": sum(c.edge == "smallest" for c in cells)}


def edge_text(edge: dict[str, int]) -> str:
    """E.g. "best lr = the largest tried in 8 of 8 cells"."""
    parts = [f"the {side} tried in {edge[side]} of {edge['cells']} cells"
             for side in ("largest", "smallest") if edge[side]]
    return "best lr = " + " and ".join(parts) if parts else "no cell at the edge"


def at_grid_edge(lr: dict[str, Any]) -> bool:
    """Whether the lr law was fitted to cells whose best lr is an end of the lrs tried."""
    edge = lr.get("edge")
    return bool(edge and (edge["largest"] or edge["smallest"]))


def edge_cell_lines(lr: dict[str, Any], limit: int = 8) -> list[str]:
    """One line per cell whose best lr is an end of the lrs tried (at most `limit`)."""
    edge = [c for c in lr["cells"] if c.get("edge")]
    lines = [f"{c['n_features']:,} features × {c['tokens']:,} tokens: best lr {c['lr']:.3g}, "
             f"the {c['edge']} of the {c['lrs_tried']} tried (edge of the grid)"
             for c in edge[:limit]]
    if len(edge) > limit:
        lines.append(f"... and {len(edge) - limit} more such cells (scaling.json: lr.cells)")
    return lines
