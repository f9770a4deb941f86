"""Bootstrap over runs: refit on resamples drawn with replacement, read intervals off the
percentiles of the refitted values (the percentile bootstrap)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from monosemantic.laws.powerlaw import FitError, PowerLaw

T = TypeVar("T")
R = TypeVar("R")


def resample_fits(items: Sequence[T], fit: Callable[[list[T]], R], n: int,
                  rng: np.random.Generator) -> tuple[list[R], int]:
    """`fit` on `n` resamples of `items` (same size, with replacement); resamples that the fit
    cannot use (FitError: too few distinct values left) are counted, not kept."""
    fits: list[R] = []
    failed = 0
    for _ in range(n):
        idx = rng.integers(0, len(items), size=len(items))
        try:
            fits.append(fit([items[i] for i in idx]))
        except FitError:
            failed += 1
    return fits, failed


def percentiles(confidence: float) -> tuple[float, float]:
    """The two-sided percentiles of a central interval, e.g. 0.95 -> (2.5, 97.5)."""
    tail = 50.0 * (1.0 - confidence)
    return tail, 100.0 - tail


def interval(values: Sequence[float] | np.ndarray, confidence: float) -> list[float] | None:
    """[low, high] percentile interval of `values`, None without values."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    lo, hi = np.percentile(arr, percentiles(confidence))
    return [float(lo), float(hi)]


def law_band(draws: list[list[float]], x: np.ndarray, confidence: float,
             ) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise percentile band of power laws (their `params()` lists) evaluated at `x`."""
    if not draws:
        return None
    values = np.stack([PowerLaw.from_params(p)(x) for p in draws])
    lo, hi = np.percentile(values, percentiles(confidence), axis=0)
    return lo, hi
