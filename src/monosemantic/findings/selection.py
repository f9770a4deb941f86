"""Which runs of a sweep the findings compare.

A *series* is the runs of one architecture and sparsity setting (e.g. "topk k=32"). By default
it holds one run per dictionary size: the longest-trained (most tokens), and among runs of
equal length the lowest final training loss (the best learning rate). `select="all"` keeps
every run (the dead fractions can then be read per token budget). Every run of a series must
read the same activations: the same width d and hook point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from monosemantic.errors import UserError
from monosemantic.runs import RunDir
from monosemantic.sweep.record import SweepRecord, read_sweep

Select = Literal["longest", "all"]


@dataclass
class SizeRun:
    """One run of a series: its line of the sweep table and its opened folder."""

    record: SweepRecord
    run: RunDir

    @property
    def n_features(self) -> int:
        return self.record.n_features


@dataclass
class Series:
    """Runs of one architecture and sparsity setting, by increasing size (then tokens)."""

    label: str
    runs: list[SizeRun]

    @property
    def sizes(self) -> list[int]:
        return sorted({r.n_features for r in self.runs})


def series_label(record: SweepRecord) -> str:
    """"topk k=32", "relu l1_coefficient=5": the architecture and its sparsity setting."""
    setting = " ".join(f"{k}={v:g}" for k, v in sorted(record.sparsity.items()))
    return f"{record.architecture} {setting}".strip()


def select_series(out: Path, select: Select = "longest") -> list[Series]:
    """The sweep's series, each checked (runs finished, same width and hook)."""
    records = read_sweep(Path(out))
    if not records:
        raise UserError(f"{Path(out) / 'sweep.jsonl'} has no records: let the sweep finish "
                        "some runs first")
    grouped: dict[str, list[SweepRecord]] = defaultdict(list)
    for record in records:
        grouped[series_label(record)].append(record)
    series = []
    for label, group in grouped.items():
        chosen = group if select == "all" else longest_per_size(group)
        chosen = sorted(chosen, key=lambda r: (r.n_features, r.tokens, r.lr, r.run))
        runs = [SizeRun(r, open_run(Path(out), r.run)) for r in chosen]
        check_same_input(label, runs)
        series.append(Series(label, runs))
    return series


def longest_per_size(records: list[SweepRecord]) -> list[SweepRecord]:
    """Per dictionary size, the run with the most training tokens (ties: lowest train loss)."""
    best: dict[int, SweepRecord] = {}
    for r in records:
        held = best.get(r.n_features)
        if held is None or (r.tokens, -r.train_loss) > (held.tokens, -held.train_loss):
            best[r.n_features] = r
    return list(best.values())


def open_run(out: Path, name: str) -> RunDir:
    """The finished run `name` of the sweep at `out`; a UserError names it otherwise."""
    try:
        return RunDir.open(out / name)
    except UserError as err:
        raise UserError(f"run {name} of the sweep {out}: {err}") from err


def check_same_input(label: str, runs: list[SizeRun]) -> None:
    """UserError naming the first run whose width or hook differs from the series' first."""
    first = runs[0]
    for other in runs[1:]:
        for what, a, b in (("width d", first.run.d_in, other.run.d_in),
                           ("hook", first.run.hook, other.run.hook)):
            if a != b:
                raise UserError(
                    f"{label}: run {other.record.run} was trained on {what} {b!r} but run "
                    f"{first.record.run} on {a!r}: the findings compare sizes on the same "
                    "activations; put runs of another model, hook or width in another sweep")


def need_sizes(series: Series, n: int, what: str) -> None:
    """UserError unless the series has at least `n` dictionary sizes."""
    if len(series.sizes) < n:
        names = ", ".join(r.record.run for r in series.runs)
        raise UserError(f"{series.label}: {what} needs at least {n} dictionary sizes; the sweep "
                        f"has {len(series.sizes)} ({names}): add sizes with "
                        "`monosemantic sweep OUT --n-features ...`")


def measure_each(all_series: list[Series], measure: Callable[[Series], dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """`measure` on every series: (the results, {label: why} of those it refused). A sweep of
    one series re-raises its refusal; none measured at all is an error listing the reasons."""
    done, failed = [], {}
    for series in all_series:
        try:
            done.append(measure(series))
        except UserError as err:
            if len(all_series) == 1:
                raise
            failed[series.label] = str(err)
    if not done:
        raise UserError("no series could be measured:\n" + "\n".join(failed.values()))
    return done, failed
