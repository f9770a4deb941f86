"""The sweep folder's shared files: locks, sweep_cfg.json and the table OUT/sweep.jsonl.

Several processes (`--jobs`, or one `--part` per machine on a shared folder) work in one sweep
folder. A run is trained by whoever holds its lock (`OUT/.locks/NAME.lock`, an flock released
by the OS when the process dies); sweep_cfg.json and sweep.jsonl are rewritten under the lock
`OUT/.locks/sweep.lock`. The table is rebuilt from every finished run's own record and sorted
by its settings, so it is the same whatever order and processes made the runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monosemantic.config import dotted, to_dict
from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text
from monosemantic.runs import RunDir
from monosemantic.sweep.config import SPARSITY_FIELDS, SWEEP_CFG, SweepConfig
from monosemantic.sweep.point import read_record
from monosemantic.sweep.record import SWEEP_TABLE, SweepRecord
from monosemantic.train.config import RESUME_SAFE_FIELDS

LOCKS = ".locks"
"""Folder of the lock files inside the sweep folder."""

GRID_FIELDS = frozenset({"n_features", "tokens", "lr", *SPARSITY_FIELDS})
"""Options a later invocation may change: it adds grid points."""
EXECUTION_FIELDS = frozenset({"out", "jobs", "part",
                              *(f"train.{name}" for name in RESUME_SAFE_FIELDS)})
"""Options that change how runs are made, not their results."""


@contextlib.contextmanager
def try_lock(path: Path, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive flock on `path` inside the block; yields False (without waiting,
    unless `wait`) when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_lock(out: Path, name: str) -> Path:
    return Path(out) / LOCKS / f"{name}.lock"


def sweep_lock(out: Path) -> Path:
    return Path(out) / LOCKS / "sweep.lock"


def save_sweep_config(cfg: SweepConfig) -> None:
    """Write OUT/sweep_cfg.json; a UserError when OUT holds a sweep whose other options
    (anything but the grid axes and how runs are executed) differ."""
    path = Path(cfg.out) / SWEEP_CFG
    new = to_dict(cfg)
    with try_lock(sweep_lock(cfg.out), wait=True):
        if path.is_file():
            diff = recipe_changes(json.loads(path.read_text()), new)
            if diff:
                changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
                raise UserError(f"{cfg.out} holds a sweep with other options ({changes}): its "
                                "runs would not be comparable. Pass its options again (only the "
                                "grid axes may change: they add runs), or choose a new folder")
        atomic_write_text(path, json.dumps(new, indent=2, sort_keys=True) + "\n")


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Options (dotted names) that differ between two saved sweep configs and change results."""
    old_flat, new_flat = dotted(old), dotted(new)
    for flat in (old_flat, new_flat):  # the same store, however the path was spelled
        if flat.get("store") is not None:
            flat["store"] = str(Path(flat["store"]).resolve())
    keys = (set(old_flat) | set(new_flat)) - GRID_FIELDS - EXECUTION_FIELDS
    return {k: (old_flat.get(k), new_flat.get(k)) for k in sorted(keys)
            if old_flat.get(k) != new_flat.get(k)}



def finished_records(out: Path) -> list[SweepRecord]:
    """The records of every finished run in the sweep folder, in table order."""
    records = []
    for child in sorted(Path(out).iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            record = read_record(RunDir(child))
            if record is not None:
                records.append(record)
    return sorted(records, key=_order)


def _order(record: SweepRecord) -> tuple:
    return (record.n_features, record.tokens, record.lr, sorted(record.sparsity.items()),
            record.run)


def write_table(out: Path) -> list[SweepRecord]:
    """Rebuild OUT/sweep.jsonl from the finished runs' records (atomically); return them."""
    with try_lock(sweep_lock(out), wait=True):
        records = finished_records(out)
        text = "".join(record.to_json() + "\n" for record in records)
        atomic_write_text(Path(out) / SWEEP_TABLE, text)
    return records


_COLUMNS = (  # header, width, format of a record's value
    ("run", 0, "{}"), ("F", 8, "{:,}"), ("tokens", 12, "{:,}"), ("steps", 7, "{:,}"),
    ("lr", 9, "{:.3g}"), ("FLOPs", 9, "{:.3g}"), ("loss", 9, "{:.4g}"), ("VE", 7, "{:.4f}"),
    ("L0", 8, "{:.1f}"), ("dead", 7, "{:.1%}"), ("loss rec.", 9, "{:.4f}"),
)


def format_table(records: list[SweepRecord]) -> str:
    """One aligned line per record: the figures of sweep.jsonl a reader looks at first."""
    rows = [[c[0] for c in _COLUMNS]]
    for r in records:
        values = (r.run, r.n_features, r.tokens, r.steps, r.lr, r.flops, r.train_loss,
                  r.variance_explained, r.l0, r.dead_fraction, r.loss_recovered)
        rows.append(["n/a" if v is None else fmt.format(v)
                     for v, (_h, _w, fmt) in zip(values, _COLUMNS)])
    width0 = max(len(row[0]) for row in rows)
    lines = []
    for row in rows:
        cells = [row[0].ljust(width0)] + [cell.rjust(width) for cell, (_h, width, _f)
                                          in zip(row[1:], _COLUMNS[1:])]
        lines.append("  ".join(cells))
    return "\n".join(lines)
