"""Crash safety: a run killed with SIGKILL and resumed ends where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.train_data import metrics_records, sparse_activations, write_store
from monosemantic.train.checkpoint import latest_checkpoint, load_checkpoint

TRAIN_ARGS = ["--steps", "120", "--batch-size", "128", "--n-features", "32", "--lr", "3e-3",
              "--l1-coefficient", "0.5", "--checkpoint-every", "20", "--log-every", "5",
              "--eval-every", "40", "--device", "cpu", "--holdout-fraction", "0.1",
              "--dead-window-tokens", "1280"]

# Runs the CLI with a pause after every step so the test can kill it mid-run; the pause
# changes no numbers.
SLOW_CLI = """
import sys, time
from monosemantic.train import trainer
step = trainer.Loop.step
def slow_step(self, x_BD):
    step(self, x_BD)
    time.sleep(0.04)
trainer.Loop.step = slow_step
from monosemantic.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict:
    return {**os.environ, "MONOSEMANTIC_QUIET": "1"}


def _train_cli(run: Path, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monosemantic.cli", "train", str(run),
                           "--store", str(store), *TRAIN_ARGS],
                          env=_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    x_ND = sparse_activations(n_rows=6000, d=16, n_true=32, active=3, seed=1)[0] * 30.0
    return write_store(tmp_path_factory.mktemp("store") / "acts", x_ND)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, store):
    reference = tmp_path / "reference"
    done = _train_cli(reference, store)
    assert done.returncode == 0, done.stderr

    run = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, "train", str(run),
                             "--store", str(store), *TRAIN_ARGS], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while (latest_checkpoint(run) or (0,))[0] < 40:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.3)  # a few steps (and log lines) past the checkpoint, lost to the crash
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_at = latest_checkpoint(run)[0]
    assert 40 <= killed_at < 120
    assert not (run / "sae").exists()

    resumed = _train_cli(run, store)
    assert resumed.returncode == 0, resumed.stderr

    final_ref = load_checkpoint(latest_checkpoint(reference)[1])
    final_run = load_checkpoint(latest_checkpoint(run)[1])
    assert final_run["step"] == final_ref["step"] == 120
    for name, ref_value in final_ref["sae"].items():
        torch.testing.assert_close(final_run["sae"][name], ref_value, rtol=1e-5, atol=1e-6)
    assert torch.equal(final_run["tracker"]["tokens_since_fire_F"],
                       final_ref["tracker"]["tokens_since_fire_F"])

    # One record per (split, step), and the same numbers as the uninterrupted run.
    recs, ref_recs = metrics_records(run), metrics_records(reference)
    keys = [(r["split"], r["step"]) for r in recs]
    assert keys == [(r["split"], r["step"]) for r in ref_recs]
    for a, b in zip(recs, ref_recs):
        for key in ("loss", "nmse", "l0", "dead_fraction", "lr"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), (a["step"], key)

    meta = json.loads((run / "sae" / "monosemantic.json").read_text())["extra_metadata"]
    assert meta["holdout_rows"] == [5400, 6000] and meta["store"] == str(store.resolve())
    assert meta["norm_scale"] == pytest.approx(1 / 30, rel=1e-3)
