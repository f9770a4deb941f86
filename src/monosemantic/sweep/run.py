"""`monosemantic sweep OUT`: train a grid of SAEs as ordinary runs and tabulate them.

Each grid point is a run folder `OUT/<name>/` (`grid.GridPoint.name`). A point whose record
exists is skipped; one whose training was interrupted resumes from its checkpoint (the
trainer's own resume); one trained but not evaluated is evaluated. `--jobs N` trains N points
at once in worker processes; `--part i/n` takes a share of the grid (one per machine). The
table OUT/sweep.jsonl is rebuilt from the finished runs after each invocation (`table`).
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from monosemantic.config import ConfigError
from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.progress import progress
from monosemantic.runs import RunDir
from monosemantic.sweep.config import SWEEP_CFG, SweepConfig, parse_part
from monosemantic.sweep.grid import GridPoint, grid_points, my_points
from monosemantic.sweep.point import read_record, run_point
from monosemantic.sweep.record import SWEEP_TABLE, SweepRecord
from monosemantic.sweep.table import (
    format_table,
    run_lock,
    save_sweep_config,
    try_lock,
    write_table,
)

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

__all__ = ["SweepConfig", "run_sweep"]


def run_sweep(cfg: SweepConfig) -> list[SweepRecord]:
    """Train and evaluate this invocation's grid points (skipping finished ones), rebuild
    OUT/sweep.jsonl, print the table; returns every finished run's record."""
    points = check_sweep(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_sweep_config(cfg)
    mine = my_points(cfg, points)
    pending = [p for p in mine if read_record(RunDir(out / p.name)) is None]
    say(f"sweep {out}: {len(points)} runs in the grid, {len(mine)} in this invocation, "
        f"{len(mine) - len(pending)} already finished")
    if cfg.jobs == 1 or len(pending) <= 1:
        failures = _sequential(cfg, pending, len(mine))
    else:
        failures = _parallel(cfg, pending, len(mine))
    records = write_table(out)
    _report(cfg, points, records, failures)
    return records


def check_sweep(cfg: SweepConfig) -> list[GridPoint]:
    """The grid, with every mistake found before anything is trained: bad options, a missing
    store, too few rows, folders in the way."""
    from monosemantic.train.config import validate

    points = grid_points(cfg)
    parse_part(cfg.part)
    if cfg.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {cfg.jobs}")
    if cfg.eval_tokens < 0:
        raise ConfigError(f"--eval-tokens must be >= 0 (0: all held-out rows), got "
                          f"{cfg.eval_tokens}")
    if cfg.loss_recovered and cfg.loss_contexts < 1:
        raise ConfigError("--loss-contexts must be >= 1, or pass --loss-recovered false")
    for point in points:
        validate(point.train_config(cfg))
    _check_store(cfg)
    _check_folder(Path(cfg.out))
    for point in points:
        RunDir(Path(cfg.out) / point.name).check_trainable()
    return points


def _check_store(cfg: SweepConfig) -> None:
    from monosemantic.activations.reader import ActivationStore

    if not Path(cfg.store).is_dir():
        raise UserError(f"activation store {cfg.store} does not exist: harvest one with "
                        "`monosemantic harvest`, or give its path with --store")
    store = ActivationStore(cfg.store, verify="size")
    held_out = round(store.n_rows * cfg.train.holdout_fraction)
    if held_out < 1:
        raise UserError(f"store {cfg.store} has {store.n_rows:,} rows, none held out at "
                        f"--holdout-fraction {cfg.train.holdout_fraction}: the sweep evaluates "
                        "every run on held-out rows, so raise --holdout-fraction")
    if store.n_rows - held_out < cfg.train.batch_size:
        raise UserError(f"store {cfg.store} has {store.n_rows - held_out:,} training rows, "
                        f"fewer than one batch of {cfg.train.batch_size:,}: lower --batch-size "
                        "or harvest more tokens")


def _check_folder(out: Path) -> None:
    """OUT is new, empty or a sweep folder: a sweep never scatters runs into another folder
    (a store or a run given as OUT by mistake)."""
    if not out.is_dir() or (out / SWEEP_CFG).is_file():
        return
    # Dot entries (.locks/, temp files) may come from a sweep starting beside this one.
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if others:
        listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise UserError(f"{out} is not a sweep folder (no {SWEEP_CFG}) and holds {listed}: "
                        "choose a new or empty folder for the sweep")


class StoreModel:
    """The store's model for the loss recovered, loaded on first use, once per process."""

    def __init__(self, cfg: SweepConfig):
        self.cfg = cfg
        self.loaded = False
        self.lm: LoadedModel | None = None

    def get(self) -> LoadedModel | None:
        if not self.cfg.loss_recovered:
            return None
        if not self.loaded:
            self.loaded = True
            self.lm = _load_store_model(self.cfg)
        return self.lm


def _load_store_model(cfg: SweepConfig) -> LoadedModel | None:
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.devices import resolve_device
    from monosemantic.models import load_model

    store = ActivationStore(cfg.store, verify="size")
    try:
        return load_model(store.model, device=str(resolve_device(cfg.train.device)),
                          dtype=store.model_dtype)
    except (UserError, OSError, ValueError) as err:
        say(f"note: loss recovered not measured (None in the records): the store's model "
            f"{store.model!r} could not be loaded ({err})")
        return None


def work(cfg: SweepConfig, points: list[GridPoint], quiet: bool = False,
         on_done: Callable[[GridPoint], object] | None = None) -> list[tuple[str, str]]:
    """Run every point of `points` that no other process holds and that has no record yet;
    returns (run, message) of the points that failed with a user-facing error. `on_done` is
    called after each point this process ran (progress)."""
    if quiet:  # worker processes: the parent shows the sweep's progress
        os.environ["MONOSEMANTIC_QUIET"] = "1"
    model = StoreModel(cfg)
    failures = []
    for point in points:
        run = RunDir(Path(cfg.out) / point.name)
        with try_lock(run_lock(cfg.out, point.name)) as mine:
            if not mine or read_record(run) is not None:
                continue
            try:
                run_point(cfg, point, model.get())
            except UserError as err:
                failures.append((point.name, str(err)))
        if on_done is not None:
            on_done(point)
    return failures


def _sequential(cfg: SweepConfig, pending: list[GridPoint], total: int) -> list:
    with progress(total=total, desc="sweep", unit="run", initial=total - len(pending)) as bar:
        return work(cfg, pending, on_done=lambda _point: bar.update(1))


def _parallel(cfg: SweepConfig, pending: list[GridPoint], total: int) -> list:
    n = min(cfg.jobs, len(pending))
    context = multiprocessing.get_context("spawn")  # no forked torch / CUDA state
    with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool, \
            progress(total=total, desc="sweep", unit="run",
                     initial=total - len(pending)) as bar:
        futures: list[Future] = [pool.submit(work, cfg, pending, True) for _ in range(n)]
        while True:
            done, running = wait(futures, timeout=2.0, return_when=FIRST_EXCEPTION)
            finished = total - sum(read_record(RunDir(Path(cfg.out) / p.name)) is None
                                   for p in pending)
            bar.update(finished - bar.n)
            if not running or any(f.exception() is not None for f in done):
                break
        try:
            return [failure for future in futures for failure in future.result()]
        except BrokenProcessPool as err:
            raise UserError("a sweep worker process died (killed, or out of memory?): run the "
                            "same command again; its run resumes from its last checkpoint") \
                from err


def _report(cfg: SweepConfig, points: list[GridPoint], records: list[SweepRecord],
            failures: list[tuple[str, str]]) -> None:
    names = {p.name for p in points}
    done = [r for r in records if r.run in names]
    say("")
    if records:
        say(format_table(records))
    say(f"\n{len(done)} of {len(points)} grid runs finished; table: {Path(cfg.out) / SWEEP_TABLE}")
    missing = len(points) - len(done) - len(failures)
    if missing > 0:
        say(f"{missing} runs are not finished: other parts (--part) or processes hold them, "
            "or run the same command again")
    if failures:
        for name, message in failures:
            say(f"failed: {name}: {message}")
        raise UserError(f"{len(failures)} runs failed (above); the others are in "
                        f"{SWEEP_TABLE}. Fix the cause and run the same command again: "
                        "finished runs are skipped")
    if len(done) >= 2:
        say(f"next: monosemantic scaling {shlex.quote(str(cfg.out))}")
