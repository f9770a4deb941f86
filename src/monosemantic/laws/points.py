"""From sweep records to the points the laws are fitted on: one group per (architecture,
sparsity setting, width), the chosen metric, the best learning rate per cell, the frontier."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from monosemantic.errors import UserError
from monosemantic.sweep.record import SweepRecord

BUILTIN_METRICS = ("train_loss", "fvu")
"""Metrics every record may carry; any key of `train_loss_terms` (mse, l1, ...) also works."""


@dataclass(frozen=True)
class Point:
    """One run as the fits see it."""

    run: str
    n_features: int
    tokens: int
    batch_size: int
    lr: float
    seed: int
    flops: float
    loss: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {"run": self.run, "n_features": self.n_features, "tokens": self.tokens,
                "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "flops": self.flops, "loss": self.loss}


@dataclass
class Group:
    """The runs of one architecture, sparsity setting and width."""

    label: str
    architecture: str
    sparsity: dict[str, float]
    d_in: int
    flops_formula: str
    points: list[Point]
    dropped: list[str]
    """Runs left out (non-finite metric in a cell where other learning rates finished)."""


def group_label(record: SweepRecord) -> str:
    setting = " ".join(f"{k}={v:g}" for k, v in sorted(record.sparsity.items()))
    return " ".join(p for p in (record.architecture, setting, f"d={record.d_in}") if p)


def metric_value(record: SweepRecord, metric: str) -> float:
    """The loss the fits use; a UserError names the metrics the record does carry."""
    if metric == "train_loss":
        return float(record.train_loss)
    if metric == "fvu":
        if record.variance_explained is None:
            raise UserError(f"run {record.run} has no variance_explained, so no fvu "
                            "(1 − variance explained): evaluate the runs, or pick another "
                            "--metric")
        return 1.0 - float(record.variance_explained)
    if metric in record.train_loss_terms:
        return float(record.train_loss_terms[metric])
    known = ", ".join([*BUILTIN_METRICS, *sorted(record.train_loss_terms)])
    raise UserError(f"run {record.run} has no metric {metric!r}; --metric can be one of: {known}")


def group_records(records: list[SweepRecord], metric: str) -> list[Group]:
    """Records split by (architecture, sparsity, d_in), each turned into points."""
    if not records:
        raise UserError("the sweep table has no records: let the sweep finish some runs first")
    by_label: dict[str, list[SweepRecord]] = defaultdict(list)
    for r in records:
        by_label[group_label(r)].append(r)
    return [_group(label, rs, metric) for label, rs in by_label.items()]


def _group(label: str, records: list[SweepRecord], metric: str) -> Group:
    points = [Point(r.run, r.n_features, r.tokens, r.batch_size, r.lr, r.seed, float(r.flops),
                    metric_value(r, metric)) for r in records]
    bad_flops = [p.run for p in points if not (math.isfinite(p.flops) and p.flops > 0)]
    if bad_flops:
        raise UserError(f"{label}: runs {bad_flops} have no finite positive flops: fix or "
                        "remove their lines in sweep.jsonl")
    bad_size = [p.run for p in points if p.n_features <= 0 or p.tokens <= 0]
    if bad_size:
        raise UserError(f"{label}: runs {bad_size} have no features or no training tokens: "
                        "fix or remove their lines in sweep.jsonl")
    cells: dict[tuple[int, int, int], list[Point]] = defaultdict(list)
    for p in points:
        cells[(p.n_features, p.tokens, p.seed)].append(p)
    kept, dropped = [], []
    for cell in cells.values():
        good = [p for p in cell if math.isfinite(p.loss)]
        if not good:
            raise UserError(f"{label}: run(s) {[p.run for p in cell]} have a non-finite "
                            f"{metric} and no other learning rate finished at that size and "
                            "token budget: re-run them (e.g. with a lower lr) or remove them")
        kept += good
        dropped += [p.run for p in cell if not math.isfinite(p.loss)]
    if any(p.loss <= 0 for p in kept):
        raise UserError(f"{label}: {metric} must be positive for a power law (runs "
                        f"{[p.run for p in kept if p.loss <= 0]} are not)")
    first = records[0]
    return Group(label, first.architecture, dict(first.sparsity), first.d_in,
                 first.flops_formula, kept, dropped)


def best_lr_points(points: list[Point]) -> list[Point]:
    """Per (features, tokens, seed), the run with the lowest loss over learning rates."""
    best: dict[tuple[int, int, int], Point] = {}
    for p in points:
        key = (p.n_features, p.tokens, p.seed)
        if key not in best or p.loss < best[key].loss:
            best[key] = p
    return list(best.values())


def frontier(points: list[Point]) -> list[Point]:
    """The compute-efficient frontier: runs whose loss is below every run of less or equal
    compute (ties in compute keep the lower loss), in increasing compute."""
    ordered = sorted(points, key=lambda p: (p.flops, p.loss))
    front: list[Point] = []
    for p in ordered:
        # Within one compute the lowest loss comes first; the others cannot go below it.
        if not front or p.loss < front[-1].loss:
            front.append(p)
    return front


def check_fittable(label: str, points: list[Point], metric: str) -> None:
    """UserErrors for data no law can be fitted to, saying what to add to the sweep."""
    flops = np.array([p.flops for p in points])
    losses = np.array([p.loss for p in points])
    n_compute = len(np.unique(flops))
    if n_compute < 3:
        raise UserError(f"{label}: {n_compute} distinct compute value(s); the fits need at "
                        "least 3: add dictionary sizes or token budgets to the sweep")
    if np.ptp(losses) == 0:
        raise UserError(f"{label}: every run has {metric} = {losses[0]:g}, so nothing depends "
                        "on compute: check --metric, or that the runs trained")
    if len({p.n_features for p in points}) < 2:
        raise UserError(f"{label}: a single dictionary size "
                        f"({points[0].n_features}); add at least two more sizes to the sweep")
    if len({p.tokens for p in points}) < 2:
        raise UserError(f"{label}: a single token budget ({points[0].tokens}); add at "
                        "least two more token budgets (steps) to the sweep")


def flops_per_feature_token(points: list[Point]) -> tuple[float, float]:
    """k in C = k·F·D (geometric mean over runs) and the largest relative deviation from it."""
    ratios = np.array([p.flops / (p.n_features * p.tokens) for p in points])
    k = float(np.exp(np.mean(np.log(ratios))))
    return k, float(np.max(np.abs(ratios / k - 1.0)))
