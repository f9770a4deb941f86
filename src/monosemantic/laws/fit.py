"""Every law of one group, with bootstrap intervals, as the JSON-ready record that
`scaling.json` holds and `monosemantic plan` reads.

- loss at the frontier: L(C) = a·C^(−b) (+ E when `irreducible` allows), fitted to the
  frontier runs (the paper's law);
- compute-optimal features and tokens, F_opt(C) ∝ C^a_F and D_opt(C) ∝ C^a_D: with method
  "parametric" derived from the fitted L(F, D) (parametric.py), with "envelope" fitted to the
  sizes and token budgets of the frontier runs;
- optimal lr against compute, when cells were swept over several lrs (lr.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from monosemantic.errors import UserError
from monosemantic.laws.bootstrap import interval, percentiles, resample_fits
from monosemantic.laws.lr import LrCell, edge_counts, edge_text, lr_cells
from monosemantic.laws.parametric import ParametricLaw, fit_parametric
from monosemantic.laws.points import (
    Group,
    Point,
    best_lr_points,
    check_fittable,
    flops_per_feature_token,
    frontier,
)
from monosemantic.laws.powerlaw import FitError, PowerLaw, falling_law, fit_power

METHODS = ("parametric", "envelope")


@dataclass(frozen=True)
class Estimate:
    """The laws fitted to one set of points."""

    loss: PowerLaw
    loss_note: str
    features: PowerLaw
    tokens: PowerLaw
    parametric: ParametricLaw | None
    on_edge: bool


def estimate(points: list[Point], method: str, irreducible: str, k: float) -> Estimate:
    """Fit the loss, features and tokens laws to `points` (FitError when they cannot be)."""
    front = frontier(points)
    if len(front) < 3:
        raise FitError(f"only {len(front)} run(s) on the compute-efficient frontier; the loss "
                       "law needs at least 3")
    c = np.array([p.flops for p in front])
    loss, note = falling_law(c, np.array([p.loss for p in front]), irreducible)
    if method == "parametric":
        law, on_edge = fit_parametric(np.array([p.n_features for p in points]),
                                      np.array([p.tokens for p in points]),
                                      np.array([p.loss for p in points]))
        return Estimate(loss, note, law.optimal_features(k), law.optimal_tokens(k), law,
                        on_edge)
    if len({p.n_features for p in front}) < 2 or len({p.tokens for p in front}) < 2:
        raise FitError("the frontier runs share one size or one token budget; the envelope "
                       "method needs both to vary along it")
    return Estimate(loss, note, fit_power(c, np.array([p.n_features for p in front])),
                    fit_power(c, np.array([p.tokens for p in front])), None, False)


def fit_group(group: Group, metric: str, method: str, irreducible: str, n_bootstrap: int,
              confidence: float, seed: int) -> dict[str, Any]:
    """The JSON record of one group's laws, intervals and points."""
    if method not in METHODS:
        raise UserError(f"--method must be one of {METHODS}, not {method!r}")
    points = best_lr_points(group.points)
    check_fittable(group.label, points, metric)
    k, k_dev = flops_per_feature_token(points)
    try:
        est = estimate(points, method, irreducible, k)
    except FitError as err:
        raise UserError(f"{group.label}: {err}. {_advice(method, points, metric)}") from err
    fixed = "yes" if est.loss.offset > 0 else "no"  # resamples keep the full fit's form
    rng = np.random.default_rng(seed)
    draws, failed = resample_fits(points, lambda s: estimate(s, method, fixed, k),
                                  n_bootstrap, rng)
    warnings = _warnings(est, draws, failed, n_bootstrap, k_dev, group)
    if method == "envelope":
        warnings += _envelope_grid_warning(frontier(points))
    front = {p.run for p in frontier(points)}
    used = {p.run for p in points}
    record: dict[str, Any] = {
        "group": group.label, "architecture": group.architecture, "sparsity": group.sparsity,
        "d_in": group.d_in, "metric": metric, "method": method,
        "flops_formula": group.flops_formula, "flops_per_feature_token": k,
        "n_runs": len(group.points),
        "compute_range": [min(p.flops for p in points), max(p.flops for p in points)],
        "batch_size": int(np.median([p.batch_size for p in points])),
        "points": [{**p.as_dict(), "used": p.run in used, "frontier": p.run in front}
                   for p in group.points],
        "dropped": group.dropped,
        "loss": _law_record(est.loss, [d.loss for d in draws], confidence, "L"),
        "features": _law_record(est.features, [d.features for d in draws], confidence, "F_opt"),
        "tokens": _law_record(est.tokens, [d.tokens for d in draws], confidence, "D_opt"),
        "parametric": _parametric_record(est, draws, confidence),
        "lr": fit_lr(group.points, n_bootstrap, confidence, rng),
        "bootstrap": {"requested": n_bootstrap, "used": len(draws), "failed": failed,
                      "seed": seed, "confidence": confidence,
                      "percentiles": list(percentiles(confidence)), "unit": "runs"},
        "warnings": warnings,
    }
    record["loss"]["irreducible"] = est.loss_note
    return record


def _advice(method: str, points: list[Point], metric: str) -> str:
    sizes, budgets = len({p.n_features for p in points}), len({p.tokens for p in points})
    if method == "parametric" and (sizes < 3 or budgets < 3):
        return ("Add runs so that at least 3 dictionary sizes and 3 token budgets are swept, "
                "or try --method envelope")
    if method == "parametric":
        # The grid is wide enough: the values themselves do not fall with size and tokens.
        hint = (" (train_loss includes auxiliary terms such as topk's AuxK, which grow with "
                "the dead features of larger dictionaries)" if metric == "train_loss" else "")
        return (f"The grid has {sizes} sizes and {budgets} token budgets, but {metric} does "
                f"not fall with both{hint}: fit another metric (--metric fvu, the held-out "
                "reconstruction, or --metric mse), or try --method envelope")
    return ("Add runs at more compute values so the frontier has at least 3 runs with "
            "different sizes and token budgets, or try --method parametric")


def _law_record(law: PowerLaw, draws: list[PowerLaw], confidence: float,
                name: str) -> dict[str, Any]:
    return {
        "log10_coef": law.log10_coef, "exponent": law.exponent, "offset": law.offset,
        "formula": law.formula("C", name),
        "interval": {"exponent": interval([d.exponent for d in draws], confidence),
                     "offset": interval([d.offset for d in draws], confidence)},
        "draws": [_short(d.params()) for d in draws],
    }


def _short(values: list[float]) -> list[float]:
    """7 significant digits: bootstrap draws need no more, and scaling.json stays small."""
    return [float(f"{v:.7g}") for v in values]


def _parametric_record(est: Estimate, draws: list[Estimate],
                       confidence: float) -> dict[str, Any] | None:
    if est.parametric is None:
        return None
    laws = [d.parametric for d in draws if d.parametric is not None]
    names = ("E", "log10_A", "alpha", "log10_B", "beta")
    return {
        **dict(zip(names, est.parametric.params())),
        "formula": "L(F, D) = E + 10^log10_A·F^(−alpha) + 10^log10_B·D^(−beta)",
        "on_edge": est.on_edge,
        "interval": {n: interval([law.params()[i] for law in laws], confidence)
                     for i, n in enumerate(names)},
        "draws": [_short(law.params()) for law in laws],
    }


def fit_lr(points: list[Point], n_bootstrap: int, confidence: float,
           rng: np.random.Generator) -> dict[str, Any] | None:
    """lr_opt(C) ∝ C^p over the cells swept over several lrs; None when no cell was; a
    record with only a `note` (and `edge`) when too few were."""
    all_cells = lr_cells(points)
    if not all_cells:
        return None
    record: dict[str, Any] = {"cells": [vars(c) for c in all_cells]}
    # A best lr on the edge of the lrs tried only bounds the optimum: leave those cells out
    # when the others still span 3 compute values.
    interior = [c for c in all_cells if c.interior]
    cells = interior if len({c.flops for c in interior}) >= 3 else all_cells
    record["edge"] = edge_counts(cells)
    n_compute = len({c.flops for c in cells})
    if n_compute < 3:
        record["note"] = (f"not fitted: {len(cells)} cell(s) with 2 or more lrs at "
                          f"{n_compute} compute value(s); sweep lrs at 3 or more sizes or "
                          "token budgets")
        return record

    def fit(sample: list[LrCell]) -> PowerLaw:
        return fit_power(np.array([c.flops for c in sample]), np.array([c.lr for c in sample]))

    draws, failed = resample_fits(cells, fit, n_bootstrap, rng)
    flat = len({c.lr for c in cells}) == 1
    # One lr in every cell: the law is exactly flat (least squares leaves a ~1e-17 slope) and
    # every resample refits it, so a zero-width interval would measure nothing.
    law = PowerLaw(float(np.log10(cells[0].lr)), 0.0) if flat else fit(cells)
    record.update(_law_record(law, draws, confidence, "lr_opt"))
    record["interval_note"] = (f"n/a (every cell's best lr is {cells[0].lr:.3g}, so every "
                               "resample refits the same flat law)" if flat and draws else None)
    record["bootstrap_failed"] = failed
    if cells is all_cells and len(interior) < len(all_cells):
        record["note"] = (f"fitted with cells whose best lr sits on the edge of the lrs tried "
                          f"(too few interior ones; {edge_text(record['edge'])}): they bound "
                          "the optimum, not place it; widen --lr")
    elif len(interior) < len(all_cells):
        record["note"] = (f"left out {len(all_cells) - len(interior)} cell(s) whose best lr "
                          "sits on the edge of the lrs tried")
    return record


def _warnings(est: Estimate, draws: list[Estimate], failed: int, n: int, k_dev: float,
              group: Group) -> list[str]:
    out = []
    if est.loss.exponent >= 0:
        out.append("the loss does not fall with compute along the frontier")
    if est.on_edge:
        out.append("alpha or beta ended on the edge of its search range (0.01 to 3): the "
                   "grid is too coarse or too narrow to pin it")
    if n and failed > n // 2:
        out.append(f"{failed} of {n} bootstrap resamples could not be fitted: the intervals "
                   "rest on few resamples; add runs")
    if k_dev > 0.05:
        out.append(f"flops is not proportional to features × tokens (deviation up to "
                   f"{k_dev:.0%}); the optimum assumes C = k·F·D")
    if group.dropped:
        out.append(f"left out runs with a non-finite metric: {group.dropped}")
    return out


def _envelope_grid_warning(front: list[Point]) -> list[str]:
    """With 2 sizes or 2 token budgets on the frontier, its F and D take the grid's values in
    a pattern fixed by the grid, and so are the envelope's exponents (relu and topk sweeps of
    4 sizes × 2 budgets on the demo store gave the same two, for every metric)."""
    sizes, budgets = len({p.n_features for p in front}), len({p.tokens for p in front})
    if min(sizes, budgets) >= 3:
        return []
    return [f"the frontier runs take {sizes} size(s) and {budgets} token budget(s): the "
            "envelope's F_opt and D_opt exponents follow from the grid's spacing more than "
            "from the losses; sweep at least 3 of each"]
