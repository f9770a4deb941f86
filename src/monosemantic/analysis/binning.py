"""Interval and histogram columns that agree exactly with the float64 edges reported for them.

The edges (`interval_edges`, `hist_edges`, what the database stores) are float64 products of a
feature's maximum. The pass places each active value in float32, one product or log10 per entry
as cheap as its bookkeeping must be; that position is off by about n·2^-23 columns (n
columns), so a value within float32 rounding of an edge (the maximum's own tenth, say) could be
counted in the column next to the one its edges say. `exact_columns` recounts the values whose
position lies within a margin of a column boundary (a few in a thousand) against the edges.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def interval_edges(max_F: Tensor, n_intervals: int) -> Tensor:
    """Edges [F, I + 1] of I equal-width intervals of [0, max]: j·max/I (float64)."""
    steps = torch.arange(n_intervals + 1, dtype=torch.float64)
    return max_F.double()[:, None] * steps[None, :] / n_intervals


def hist_edges(max_F: Tensor, hist_bins: int, hist_decades: float) -> Tensor:
    """Edges [F, H + 1] of H log-spaced bins of [max·10^-decades, max] (float64)."""
    exps = torch.linspace(-hist_decades, 0.0, hist_bins + 1, dtype=torch.float64)
    return max_F.double()[:, None] * torch.pow(10.0, exps)[None, :]


def exact_columns(pos_E: Tensor, vals_E: Tensor, n_cols: int,
                  inner_edges: Callable[[Tensor], Tensor]) -> Tensor:
    """Column in [0, n_cols) of each value: how many of its inner edges (the n_cols - 1
    boundaries between columns, `inner_edges(index_S)` -> [S, n_cols - 1] float64 for the
    entries index_S) are <= it.

    `pos_E` is the value's float32 position in column units (column c spans [c, c + 1)), which
    is trusted away from the boundaries: it may be off by about n_cols·2^-23, and the margin is
    at least 32 times that."""
    floor_E = pos_E.floor()
    col_E = floor_E.clamp(0, n_cols - 1).long()
    margin = max(2.0 ** -10, n_cols * 2.0 ** -18)
    frac_E = pos_E - floor_E  # NaN for an infinite position: far from every boundary
    near_S = ((frac_E < margin) | (frac_E > 1 - margin)).nonzero().squeeze(1)
    if len(near_S):
        edges_SB = inner_edges(near_S)
        col_E[near_S] = (edges_SB <= vals_E[near_S, None].double()).sum(1)
    return col_E
