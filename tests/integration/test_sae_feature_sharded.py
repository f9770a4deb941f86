"""The feature-sharded forward of every architecture equals the unsharded one: 2 and 4 gloo
processes each hold a slice of a 64-feature SAE and must select exactly the same codes and get
the same losses, x̂ and gradients (relative 1e-4; measured about 1e-7), AuxK included
(`helpers/feature_shard_check.py` runs the cases under torchrun)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SRC = str(TESTS.parent / "src")


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_forward_matches_unsharded(world):
    env = {**os.environ, "MONOSEMANTIC_QUIET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(world), str(TESTS / "helpers" / "feature_shard_check.py")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    for case in ("relu", "relu_sparse", "topk", "batchtopk", "jumprelu"):
        assert any(line.startswith(f"{case}: ") for line in lines), case
