"""Training on GPUs (skipped without CUDA): bf16 autocast on one GPU, and data-parallel
training over two GPUs with NCCL matching the one-GPU run.

Not run where this was written (no GPU there): written to be correct by reading, like the CPU
tests it mirrors (tests/integration/test_train_run.py, test_train_distributed.py)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.torchrun import torchrun, torchrun_env
from helpers.train_data import MemoryData, metrics_records, sparse_activations, write_store
from monosemantic.sae import SAEConfig, load_sae
from monosemantic.train.trainer import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < 2 or not torch.distributed.is_nccl_available(),
    reason="needs 2 CUDA devices and NCCL")

D, BATCH = 16, 256


@pytest.mark.parametrize("arch, extra, lr", [("relu", {"l1_coefficient": 0.3}, 3e-3),
                                             ("topk", {"k": 4}, 1e-2)])
def test_bf16_autocast_training_learns_and_saves(tmp_path, arch, extra, lr):
    """The CPU test's recipe (test_train_run.py) under bf16 autocast on the GPU."""
    x_ND = sparse_activations(n_rows=8192, d=D, n_true=32, active=3, seed=0)[0]
    cfg = TrainConfig(out=tmp_path / arch, store=Path("unused"), batch_size=BATCH, steps=300,
                      sae=SAEConfig(architecture=arch, n_features=64, **extra), lr=lr,
                      log_every=25, eval_every=100, checkpoint_every=100, device="cuda",
                      autocast="bfloat16", dead_window_tokens=20 * BATCH)
    run = train(cfg, data=MemoryData(x_ND, BATCH, holdout_fraction=0.1))

    train_recs = [r for r in metrics_records(run) if r["split"] == "train"]
    assert [r["step"] for r in train_recs] == list(range(25, 301, 25))
    assert all(math.isfinite(r["loss"]) for r in train_recs)
    # The CPU run halves it; bf16 rounding is left a margin.
    assert train_recs[-1]["loss"] < 0.8 * train_recs[0]["loss"]
    sae = load_sae(run / "sae")
    # Autocast computes in bf16; the weights and the saved SAE stay float32.
    assert all(t.dtype == torch.float32 for t in sae.inference_state().values())
    assert all(bool(torch.isfinite(t).all()) for t in sae.inference_state().values())


def _train(run: Path, store: Path, arch: str, ranks: int) -> None:
    # float32 in both runs: bf16 rounding would hide the comparison's 1e-3 bound.
    args = ["train", str(run), "--store", str(store), "--steps", "50", "--batch-size", "64",
            "--sae.architecture", arch, "--sae.n-features", "256", "--lr", "3e-3",
            "--log-every", "10", "--eval-every", "25", "--checkpoint-every", "25",
            "--device", "cuda", "--autocast", "float32", "--holdout-fraction", "0.1",
            "--dead-window-tokens", "320",
            *(["--sae.l1-coefficient", "0.3"] if arch == "relu" else
              ["--sae.k", "2", "--sae.aux-k", "8"])]
    done = subprocess.run(torchrun(ranks, "-m", "monosemantic", *args), env=torchrun_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


@two_gpus
@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_two_gpus_match_one_gpu(tmp_path, arch):
    """As the CPU test: the runs differ only in float summation order (NCCL's all-reduce, the
    GPU's atomics), so the weights agree to 1e-3 and the metrics to 1e-4 relative."""
    x_ND = sparse_activations(n_rows=4096, d=D, n_true=48, active=3, seed=2)[0] * 10.0
    store = write_store(tmp_path / "acts", x_ND)
    single, double = tmp_path / "one", tmp_path / "two"
    _train(single, store, arch, 1)
    _train(double, store, arch, 2)

    state_1 = load_sae(single / "sae").inference_state()
    state_2 = load_sae(double / "sae").inference_state()
    for name, value in state_1.items():
        assert float((state_2[name] - value).norm()) <= 1e-3 * float(value.norm()), name
    recs_1, recs_2 = metrics_records(single), metrics_records(double)
    assert [(r["split"], r["step"]) for r in recs_2] == [(r["split"], r["step"]) for r in recs_1]
    for r1, r2 in zip(recs_1, recs_2):
        for key in ("loss", "mse", "l0", "nmse", "dead_fraction"):
            if key in r1:
                assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), (r1["step"], key)
