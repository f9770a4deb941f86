"""`SAE.encode_slice(x, lo, hi)` equals `encode(x)[:, lo:hi]`, and `SAE.encode_sparse` lists
exactly its nonzero entries, for every architecture."""

from __future__ import annotations

import pytest
import torch

import monosemantic.sae.topk as topk_module
from helpers.dyadic import D, F, dyadic_sae
from monosemantic.sae import SAEConfig, create_sae

SLICES = [(0, 5), (5, 10), (10, 12), (3, 4), (0, 12)]


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
@pytest.mark.parametrize("block", [4, 4096])
def test_slice_equals_full_encode(architecture, block, monkeypatch):
    sae, x_ND = dyadic_sae(architecture)
    sae.encode_block = block  # 4: the slices' own encoder columns, never all of them
    monkeypatch.setattr(topk_module, "TOPK_CHUNK_FLOATS", 1)  # topk: chunks of 64 rows
    f_NF = sae.encode(x_ND)
    assert (f_NF > 0).any() and (f_NF == 0).any()
    for lo, hi in SLICES:
        assert torch.equal(sae.encode_slice(x_ND, lo, hi), f_NF[:, lo:hi]), (lo, hi)


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_slice_of_random_weights_is_bitwise_the_full_encode(architecture):
    """With the default block a small dictionary runs `encode`'s own GEMM: same floats."""
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture=architecture, d_in=D, n_features=F, k=3))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
    x_ND = torch.randn(37, D)
    f_NF = sae.encode(x_ND)
    for lo, hi in SLICES:
        assert torch.equal(sae.encode_slice(x_ND, lo, hi), f_NF[:, lo:hi])


def test_untrained_batchtopk_slices_its_batch_topk():
    sae, x_ND = dyadic_sae("batchtopk")
    sae.threshold_count.zero_()  # no threshold yet: codes depend on the whole batch
    f_NF = sae.encode(x_ND)
    assert torch.equal(sae.encode_slice(x_ND, 5, 10), f_NF[:, 5:10])


def test_elementwise_slice_reads_only_its_block_of_columns():
    sae, x_ND = dyadic_sae("relu")
    sae.encode_block = 4
    with torch.no_grad():
        sae.W_enc[:, :4] = float("nan")  # outside the block of [5, 8): must not be read
    assert torch.isfinite(sae.encode_slice(x_ND, 5, 8)).all()


def test_slice_outside_the_dictionary_is_refused():
    sae, x_ND = dyadic_sae("relu")
    for lo, hi in [(-1, 3), (3, 3), (5, F + 1)]:
        with pytest.raises(ValueError, match="feature slice"):
            sae.encode_slice(x_ND, lo, hi)


def _listed(f_NF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, feature, value) of the nonzero entries, row-major (a brute-force reference)."""
    row_E, feat_E = f_NF.nonzero(as_tuple=True)
    return row_E, feat_E, f_NF[row_E, feat_E]


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu",
                                          "untrained batchtopk"])
def test_sparse_codes_list_the_nonzero_codes_in_order(architecture, monkeypatch):
    sae, x_ND = dyadic_sae(architecture.split()[-1])
    if architecture.startswith("untrained"):
        sae.threshold_count.zero_()  # the batch top k·B picks the codes
    monkeypatch.setattr(topk_module, "TOPK_CHUNK_FLOATS", 1)  # topk: chunks of 64 rows
    f_NF = sae.encode(x_ND)
    for lo, hi in SLICES:
        codes = sae.encode_sparse(x_ND, lo, hi)
        row_E, feat_E, val_E = _listed(f_NF[:, lo:hi])
        assert (codes.n_rows, codes.n_features) == (len(x_ND), hi - lo)
        assert torch.equal(codes.row_N, row_E), (lo, hi)
        assert torch.equal(codes.idx_N, feat_E), (lo, hi)
        assert torch.equal(codes.vals_N, val_E), (lo, hi)
    assert torch.equal(sae.encode_sparse(x_ND).dense(), f_NF)


def test_topk_sparse_codes_leave_out_picks_that_relu_zeroes():
    """A row whose pre-activations are all negative still has k picks: none is listed."""
    sae, x_ND = dyadic_sae("topk")
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    codes = sae.encode_sparse(x_ND)
    assert codes.row_N.numel() == 0 and not sae.encode(x_ND).any()


def test_sparse_codes_of_an_empty_batch_are_empty():
    sae, x_ND = dyadic_sae("topk")
    codes = sae.encode_sparse(x_ND[:0], 2, 7)
    assert (codes.n_rows, codes.n_features, codes.row_N.numel()) == (0, 5, 0)


def test_sparse_slice_outside_the_dictionary_is_refused():
    sae, x_ND = dyadic_sae("topk")
    with pytest.raises(ValueError, match="feature slice"):
        sae.encode_sparse(x_ND, 5, F + 1)
