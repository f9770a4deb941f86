"""The analysis encode on a GPU: listed codes and both passes match the CPU's (skipped
without CUDA). Random Gaussian weights: no ties among pre-activations, so the GPU's top-k and
GEMM rounding (float32, TF32 off) pick the same codes, with values equal to float tolerance."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.onepass import PassOptions, analyze_batches
from monosemantic.sae import SAEConfig, create_sae

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

D, F, N_ROWS = 16, 64, 400


def random_sae(architecture: str):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture=architecture, d_in=D, n_features=F, k=4))
    with torch.no_grad():
        sae.W_enc.normal_(0.0, 0.5)
        sae.b_enc.normal_(-1.0, 0.3)
        if architecture == "batchtopk":
            sae.threshold.copy_(torch.rand(F) + 0.5)
            sae.threshold_count.fill_(1)
    return sae, torch.randn(N_ROWS, D, generator=torch.Generator().manual_seed(1))


def assert_same_codes(gpu, cpu, device: str) -> None:
    assert gpu.vals_N.device.type == device
    assert torch.equal(gpu.row_N.cpu(), cpu.row_N)
    assert torch.equal(gpu.idx_N.cpu(), cpu.idx_N)
    torch.testing.assert_close(gpu.vals_N.cpu(), cpu.vals_N, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk"])
def test_sparse_codes_on_the_gpu_match_the_cpu(architecture, device="cuda"):
    sae, x_ND = random_sae(architecture)
    cpu = sae.encode_sparse(x_ND, 5, 50)
    assert cpu.row_N.numel() > 0
    sae_dev = copy.deepcopy(sae).to(device)
    assert_same_codes(sae_dev.encode_sparse(x_ND.to(device), 5, 50), cpu, device)


def test_passes_with_a_gpu_encode_match_the_cpu(device="cuda"):
    sae, x_ND = random_sae("topk")
    tokens_N = torch.arange(N_ROWS) % 97
    doc_ids_N = torch.arange(N_ROWS) // 37
    positions_N = torch.zeros(N_ROWS, dtype=torch.int64)

    def batches():
        return (RowBatch(x_ND[i:i + 100], tokens_N[i:i + 100], doc_ids_N[i:i + 100],
                         positions_N[i:i + 100]) for i in range(0, N_ROWS, 100))

    opts = PassOptions(top_k=4, random_examples=2, zero_examples=2, n_intervals=3,
                       interval_examples=2, window_left=3, window_right=2,
                       cooccur_neighbours=0)
    cpu = analyze_batches(batches, sae.encode_sparse, F, opts)
    sae_dev = copy.deepcopy(sae).to(device)
    gpu = analyze_batches(batches, lambda x_BD: sae_dev.encode_sparse(x_BD.to(device)), F,
                          dataclasses.replace(opts, encode_workers=1))
    assert int(cpu.count_F.sum()) > 0
    assert torch.equal(gpu.count_F, cpu.count_F)
    torch.testing.assert_close(gpu.max_F, cpu.max_F)
    assert torch.equal(gpu.top.rows_GR, cpu.top.rows_GR)
    torch.testing.assert_close(gpu.top.acts_GRW, cpu.top.acts_GRW)
    assert torch.equal(gpu.intervals.rows_GR, cpu.intervals.rows_GR)
    assert torch.equal(gpu.hist_FH, cpu.hist_FH)
