"""Crash-safe file writes: a target is either absent, its old version, or complete.

The pattern everywhere: write a temp file beside the target, fsync it, rename it over the
target, fsync the directory so the rename itself survives a power loss.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file below `directory`, then the directory itself."""
    for path in Path(directory).rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(directory)


def temp_path(target: Path) -> Path:
    """The temp name used while `target` is written (`.NAME.tmp` beside it)."""
    return target.with_name(f".{target.name}.tmp")


def publish(tmp: Path, target: Path) -> None:
    """fsync the finished `tmp`, rename it to `target`, fsync the directory."""
    fsync_path(tmp)
    os.replace(tmp, target)
    fsync_path(target.parent)


def save_figure(fig: Any, target: Path, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG to `target` crash-safely (`fig.savefig` to the temp
    name, then `publish`)."""
    tmp = temp_path(target)
    fig.savefig(tmp, dpi=dpi, format="png")
    publish(tmp, target)


def atomic_write_stream(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace `target` with what `write(fh)` writes, atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_path(target.parent)


def atomic_write(target: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """Create or replace `target` with the concatenated `chunks`, atomically."""

    def write(fh: BinaryIO) -> None:
        for chunk in chunks:
            fh.write(chunk)

    atomic_write_stream(target, write)


def atomic_write_text(target: Path, text: str) -> None:
    """Create or replace `target` with UTF-8 `text`, atomically."""
    atomic_write(target, [text.encode()])


def json_ready(value: Any) -> Any:
    """`value` with every NaN / inf float (in nested dicts, lists and tuples) as None: strict
    JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
