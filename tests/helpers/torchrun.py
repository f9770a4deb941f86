"""Launching `monosemantic` under torchrun from tests: command lines and the environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
RANK_CLI = str(Path(__file__).resolve().parent / "rank_cli.py")


def torchrun(ranks: int, *target: str) -> list[str]:
    """The command that runs `target` (`-m module ...` or `script ...`) on `ranks` local
    processes; `ranks` 1 runs it plainly, without torchrun."""
    if ranks == 1:
        return [sys.executable, *target]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(ranks), *target]


def torchrun_env(**extra: str) -> dict[str, str]:
    """This worktree's sources first on the path, one thread per process (the ranks of a test
    must fit 2 cores), quiet output, plus `extra`."""
    return {**os.environ, "MONOSEMANTIC_QUIET": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), **extra}
