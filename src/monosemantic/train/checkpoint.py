"""Training checkpoints: one directory per step under RUN/checkpoints/, made atomically.

A checkpoint holds everything a resumed run needs to continue bit-for-bit where it stopped:
SAE weights, optimizer state, step (schedule position and reader position: one batch per step),
RNG states, dead-feature counters and the metric accumulators of the current logging window.

`step_XXXXXXXXX/` is a torch.distributed.checkpoint folder (every rank writes its part, see
`train/dcp.py`) plus `meta.json` (step, configs, world size, scalars; written by rank 0). It is
written as `.step_XXXXXXXXX.tmp/` and renamed by rank 0 once every rank has finished, so a
folder with a checkpoint's name is always complete; temp and half-deleted folders are removed
when a run starts. Checkpoints of the earlier single-file format (`step_XXXXXXXXX.pt`) are
refused with a message (`legacy_checkpoints`).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monosemantic.fsutil import atomic_write_text, fsync_path, fsync_tree, temp_path
from monosemantic.runs import RunDir

_NAME = re.compile(r"^step_(\d{9})$")
_LEGACY = re.compile(r"^step_(\d{9})\.pt$")
META = "meta.json"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return RunDir(run_dir).checkpoints_dir / f"step_{step:09d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in `run_dir`, oldest first."""
    return _matching(run_dir, _NAME, dirs=True)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def legacy_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of single-file `.pt` checkpoints (the format before sharded checkpoints)."""
    return _matching(run_dir, _LEGACY, dirs=False)


def _matching(run_dir: Path, pattern: re.Pattern, dirs: bool) -> list[tuple[int, Path]]:
    folder = RunDir(run_dir).checkpoints_dir
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir() == dirs:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def clean_partial(run_dir: Path) -> None:
    """Remove the temp folders of unfinished checkpoints and half-deleted old ones (rank 0,
    before any rank writes)."""
    folder = RunDir(run_dir).checkpoints_dir
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".step_") and path.name.endswith((".tmp", ".old")):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def write_checkpoint(run_dir: Path, step: int, write: Callable[[Path], None],
                     meta: dict[str, Any], keep: int, is_main: bool) -> Path:
    """Make the checkpoint folder of `step`: every rank calls `write(folder)` (a collective
    that returns once all ranks have written), rank 0 adds `meta`, publishes the folder and
    drops all but the `keep` most recent checkpoints."""
    final = checkpoint_path(run_dir, step)
    tmp = temp_path(final)
    if is_main:  # the others block in `write`'s first collective until this is done
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True, exist_ok=True)  # another rank's DCP writer may have made it
    write(tmp)
    if not is_main:
        return final
    atomic_write_text(tmp / META, json.dumps(meta))
    fsync_tree(tmp)
    if final.exists():  # the same step written again (a resume from an earlier one)
        os.replace(final, _aside(final))
    os.replace(tmp, final)
    fsync_path(final.parent)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        _remove(old)
    if _aside(final).exists():
        _remove(_aside(final))
    return final


def _remove(path: Path) -> None:
    # Renamed first: a folder with a checkpoint's name is never half deleted.
    aside = path if path.name.endswith(".old") else _aside(path)
    if aside != path:
        os.replace(path, aside)
    shutil.rmtree(aside)


def read_meta(path: Path) -> dict[str, Any]:
    """The `meta.json` of the checkpoint folder `path`."""
    return json.loads((Path(path) / META).read_text())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A whole checkpoint in one process (inspection, tests): the meta fields, plus each group
    of tensors (`sae`, `optim`, `tracker`, ...) as a dict of whole tensors, plus the objects."""
    from monosemantic.train.dcp import load_state, saved_entries

    entries = saved_entries(path)
    tensors = {k: torch.empty(entry[0], dtype=entry[1]) for k, entry in entries.items()
               if entry is not None}
    objects = load_state(path, tensors, [k for k, entry in entries.items() if entry is None],
                         sharded={}, part=None)
    state = read_meta(path)
    for key, value in {**tensors, **objects}.items():
        group, _, name = key.partition("/")
        state.setdefault(group, {})[name] = value
    return state


def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy and torch RNG states (CUDA's too when training there)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
