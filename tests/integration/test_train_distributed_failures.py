"""Data-parallel training when one rank misbehaves (gloo, CPU): the others stop with an error
that says why, instead of hanging or training on different options.

`helpers/rank_cli.py` runs the CLI under torchrun and changes one rank's behaviour; every run
has a subprocess timeout far above what it needs, so a hang fails the test instead of
blocking the suite."""

import subprocess
from pathlib import Path

import pytest

from helpers.torchrun import RANK_CLI, torchrun, torchrun_env
from helpers.train_data import sparse_activations, write_store

HANG_GUARD_S = 240


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    x_ND = sparse_activations(n_rows=2048, d=16, n_true=48, active=3, seed=3)[0]
    return write_store(tmp_path_factory.mktemp("store") / "acts", x_ND)


def _train(run: Path, store: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    args = ["train", str(run), "--store", str(store), "--steps", "20", "--batch-size", "64",
            "--sae.architecture", "topk", "--sae.n-features", "64", "--sae.k", "4",
            "--log-every", "5", "--eval-every", "0", "--checkpoint-every", "0",
            "--device", "cpu", *extra]
    return subprocess.run(torchrun(2, RANK_CLI, *args), env=torchrun_env(**env),
                          capture_output=True, text=True, timeout=HANG_GUARD_S)


def test_the_wrapper_trains_when_no_rank_misbehaves(tmp_path, store):
    done = _train(tmp_path / "run", store)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "sae").is_dir()


def test_a_stalled_rank_stops_the_others_with_the_timeout_named(tmp_path, store):
    # Rank 1 sleeps 600 s before step 3; rank 0 waits in that step's gradient all-reduce.
    done = _train(tmp_path / "run", store, "--dist-timeout", "5", TEST_STALL_AT_STEP="3")
    assert done.returncode != 0
    assert "rank 0: a collective waited longer than --dist-timeout 5 s" in done.stderr
    assert "raise --dist-timeout" in done.stderr
    assert "RuntimeError" not in done.stderr  # no rank died with gloo's bare traceback


def test_ranks_with_different_options_refuse_to_train(tmp_path, store):
    done = _train(tmp_path / "run", store, TEST_ODD_ARGS="--lr 1e-3 --log-every 10")
    assert done.returncode != 0
    # Rank 1's error is always there; rank 0's (with the values) unless torchrun stopped it
    # first, so its wording is left to the unit tests.
    assert "rank 1: the ranks were given different options (--log-every, --lr; " in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
