"""The scores' formulas, on plain lists (tested on hand-made inputs)."""

from __future__ import annotations

import math
from typing import Any


def balanced_accuracy(predicted: list[bool], actual: list[bool]) -> float:
    """(TPR + TNR) / 2. With only one class present, the rate of that class alone."""
    if len(predicted) != len(actual) or not actual:
        raise ValueError("balanced_accuracy needs two non-empty lists of the same length")
    pos = [p for p, a in zip(predicted, actual) if a]
    neg = [p for p, a in zip(predicted, actual) if not a]
    rates = []
    if pos:
        rates.append(sum(pos) / len(pos))
    if neg:
        rates.append(sum(not p for p in neg) / len(neg))
    return sum(rates) / len(rates)


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation; None when either side is constant (undefined)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("pearson needs two lists of the same length >= 2")
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def rubric_summary(ratings: list[tuple[int, int]], n_intervals: int) -> dict[str, Any]:
    """(interval, rating 0-3) pairs -> overall mean and distribution, and per interval the
    rating counts and mean (None where an interval has no rated sample)."""
    if not ratings:
        raise ValueError("no ratings")
    per = []
    for idx in range(n_intervals):
        got = [r for i, r in ratings if i == idx]
        per.append({"interval": idx, "counts": [got.count(v) for v in range(4)],
                    "mean": sum(got) / len(got) if got else None})
    values = [r for _, r in ratings]
    return {"mean": sum(values) / len(values), "counts": [values.count(v) for v in range(4)],
            "per_interval": per}
