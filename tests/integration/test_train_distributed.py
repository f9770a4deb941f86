"""Data-parallel training under torchrun (gloo, CPU): 2 and 4 ranks train the SAE one process
trains.

Each rank holds 1/N of every global batch and the gradients are averaged, so the runs differ
only in float summation order. After 50 Adam steps that left relative differences of about
1e-7 (Frobenius norm of each tensor; metrics likewise), except where a gradient is zero up to
rounding: Adam (eps 1e-8) turns its last-bit noise (~1e-9) into an update of up to
lr·1e-9/eps. batchtopk at 2 ranks has one such feature (measured 2e-4 relative on b_enc, 1.3e-5
on the metrics), hence the bounds: 1e-3 on the weights, 1e-4 on the metrics. A selection or
normalisation done per rank instead of globally moves them by percents."""

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers.parity import parity_args
from helpers.torchrun import torchrun, torchrun_env
from helpers.train_data import metrics_records, sparse_activations, write_store
from monosemantic.sae import load_sae


def _train(run: Path, store: Path, arch: str, ranks: int, *extra: str) -> None:
    cmd = torchrun(ranks, "-m", "monosemantic", "train", str(run), "--store", str(store),
                   *parity_args(arch), *extra)
    done = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    x_ND = sparse_activations(n_rows=4096, d=16, n_true=48, active=3, seed=2)[0] * 10.0
    return write_store(tmp_path_factory.mktemp("store") / "acts", x_ND)


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory, store) -> Callable[[str], Path]:
    """The one-process run of each architecture (trained on first use)."""
    runs: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in runs:
            runs[arch] = tmp_path_factory.mktemp("single") / arch
            _train(runs[arch], store, arch, 1)
        return runs[arch]

    return get


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_ranks_match_one_process(tmp_path, store, single_runs, arch, world):
    single, double = single_runs(arch), tmp_path / "ranks"
    _train(double, store, arch, world)

    state_1 = load_sae(single / "sae").inference_state()
    state_2 = load_sae(double / "sae").inference_state()
    for name, value in state_1.items():
        assert float((state_2[name] - value).norm()) <= 1e-3 * float(value.norm()), name

    recs_1, recs_2 = metrics_records(single), metrics_records(double)
    # Rank 0 alone logged: one record per (split, step), the same ones as the single process.
    assert [(r["split"], r["step"]) for r in recs_2] == [(r["split"], r["step"]) for r in recs_1]
    for r1, r2 in zip(recs_1, recs_2):
        for key in ("loss", "mse", "l0", "nmse", "dead_fraction", "dense_fraction"):
            if key in r1:
                assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), (r1["step"], key)
    if arch in ("topk", "batchtopk", "matryoshka"):  # AuxK ran: some feature was dead at some point
        assert any(r.get("loss_aux", 0) > 0 for r in recs_1)
    assert sorted(p.name for p in (double / "checkpoints").iterdir()) == \
        sorted(p.name for p in (single / "checkpoints").iterdir())


def test_batch_size_must_split_over_ranks(tmp_path, store):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "monosemantic", "train", str(tmp_path / "run"), "--store", str(store),
           *parity_args("relu"), "--batch-size", "63"]
    done = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "does not split evenly over 2 ranks" in done.stderr


def test_resume_loads_the_same_checkpoint_on_every_rank(tmp_path, store):
    """A 2-rank run resumed from its step-25 checkpoint ends where the uninterrupted one ended
    (tracker, Adam state, metric sums and the readers' positions restored on both ranks)."""
    run = tmp_path / "run"
    _train(run, store, "topk", 2, "--keep-checkpoints", "2")
    whole = load_sae(run / "sae").inference_state()
    whole_records = metrics_records(run)
    last = sorted((run / "checkpoints").iterdir())[-1]
    assert "50" in last.name
    shutil.rmtree(last)
    shutil.rmtree(run / "sae")

    _train(run, store, "topk", 2, "--keep-checkpoints", "2")
    resumed = load_sae(run / "sae").inference_state()
    for name, value in whole.items():
        assert torch.equal(resumed[name], value), name
    timing = ("tokens_per_s", "elapsed_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in metrics_records(run)] == \
        [{k: v for k, v in r.items() if k not in timing} for r in whole_records]


def test_a_missing_store_stops_every_rank(tmp_path):
    missing = tmp_path / "acts"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "monosemantic", "train", str(tmp_path / "run"), "--store", str(missing),
           *parity_args("relu")]
    done = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"on ranks 0, 1 of 2: --store {missing} does not exist" in done.stderr
