"""Training checkpoints: one file per step under RUN/checkpoints/, written atomically.

A checkpoint holds everything a resumed run needs to continue bit-for-bit where it stopped:
SAE weights, optimizer state, step (schedule position and reader position: one batch per step),
RNG states, dead-feature counters and the metric accumulators of the current logging window.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monosemantic.fsutil import atomic_write_stream
from monosemantic.runs import RunDir

_NAME = re.compile(r"^step_(\d{9})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return RunDir(run_dir).checkpoints_dir / f"step_{step:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in `run_dir`, oldest first."""
    folder = RunDir(run_dir).checkpoints_dir
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, rename, fsync the folder."""
    atomic_write_stream(Path(path), lambda fh: torch.save(obj, fh))


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint for `step`, then drop all but the `keep` most recent ones."""
    path = checkpoint_path(run_dir, step)
    atomic_torch_save(state, path)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the trainer moves tensors to its device)."""
    # weights_only=False: the state holds Python RNG state tuples and numpy arrays, and the file
    # is one this trainer wrote into the user's own run directory.
    return torch.load(path, map_location="cpu", weights_only=False)


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
