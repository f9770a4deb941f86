"""Launching `monosemantic` (or a script) under torchrun from tests: command lines, the
environment, and a subprocess runner (gloo on CPU; one process when ranks is 1)."""

from __future__ import annotations

import os
import subprocess
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
    """This checkout's sources first on the path, one thread per process (so every run computes
    the same bits, and the ranks of a test fit 2 cores), quiet output, plus `extra`."""
    return {**os.environ, "MONOSEMANTIC_QUIET": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), **extra}


def run_cli(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m monosemantic ARGS` on `ranks` processes, output captured."""
    return run_python(ranks, "-m", "monosemantic", *args, timeout=timeout)


def run_python(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python ARGS` (a script or `-m module ...`) on `ranks` processes, output captured."""
    return subprocess.run(torchrun(ranks, *args), env=torchrun_env(), capture_output=True,
                          text=True, timeout=timeout)
