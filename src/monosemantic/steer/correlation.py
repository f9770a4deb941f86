"""Pearson and Spearman correlations of two equal-length series (float64 on the CPU)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _series(values: Sequence[float] | Tensor) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()


def pearson(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor) -> float | None:
    """Pearson correlation; None with fewer than two points or a constant series."""
    x, y = _series(a), _series(b)
    if len(x) != len(y):
        raise ValueError(f"series of different lengths: {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return None if denom == 0 else float((x * y).sum()) / denom


def average_ranks(values: Sequence[float] | Tensor) -> Tensor:
    """1-based ranks [N] (float64); tied values share the mean of the ranks they span."""
    x = _series(values)
    sorted_x, order = x.sort(stable=True)
    starts_group = torch.ones(len(x), dtype=torch.bool)
    starts_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group_of_sorted = starts_group.cumsum(0) - 1
    size_G = torch.bincount(group_of_sorted).to(torch.float64)
    last_rank_G = size_G.cumsum(0)
    mean_rank_G = last_rank_G - (size_G - 1) / 2
    ranks = torch.empty_like(x)
    ranks[order] = mean_rank_G[group_of_sorted]
    return ranks


def spearman(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor) -> float | None:
    """Spearman rank correlation (Pearson of the average ranks, so ties are handled); None
    with fewer than two points or a constant series."""
    x, y = _series(a), _series(b)
    if len(x) != len(y):
        raise ValueError(f"series of different lengths: {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    return pearson(average_ranks(x), average_ranks(y))
