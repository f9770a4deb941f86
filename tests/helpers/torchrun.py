"""Run the command line in subprocesses, under torchrun (gloo on CPU) or as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def run_cli(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m monosemantic ARGS`, under torchrun with `ranks` processes when > 1; one thread
    per process (so every run computes the same bits, and 2 ranks fit 2 cores)."""
    return run_python(ranks, "-m", "monosemantic", *args, timeout=timeout)


def run_python(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python ARGS` (a script or `-m module ...`) as `run_cli` runs the command line."""
    launcher = ([] if ranks == 1 else
                ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)])
    env = {**os.environ, "MONOSEMANTIC_QUIET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *launcher, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
