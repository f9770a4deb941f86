"""Reconstruction / sparsity metrics on plain tensors: formulas pinned by hand, streaming equal
to one batch."""

import math

import pytest
import torch

from monosemantic.evals.metrics import (
    FeatureDensityAccumulator,
    ReconstructionAccumulator,
    reconstruction_metrics,
)


def test_nmse_hand_computed():
    x_ND = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # mean [2, 0]; E||x - mean||^2 = 1
    x_hat_ND = torch.tensor([[1.0, 1.0], [3.0, 0.0]])  # E||x - x_hat||^2 = 1/2
    f_NF = torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 5.0]])
    m = reconstruction_metrics(x_ND, x_hat_ND, f_NF)
    assert m["nmse"] == pytest.approx(0.5)
    assert m["variance_explained"] == pytest.approx(0.5)
    assert m["mse"] == pytest.approx(0.5)
    assert m["l0"] == pytest.approx(1.5)
    assert m["n_tokens"] == 2


def test_nmse_subtracts_the_mean():
    # Predicting the mean explains no variance, however large the mean is relative to the spread:
    # dividing by E||x||^2 instead (the known bug) would report ~99.99% variance explained here.
    torch.manual_seed(0)
    x_ND = 100.0 + torch.randn(500, 8)
    x_hat_ND = x_ND.mean(dim=0, keepdim=True).expand_as(x_ND)
    m = reconstruction_metrics(x_ND, x_hat_ND, torch.ones(500, 4))
    assert m["nmse"] == pytest.approx(1.0, abs=1e-6)
    assert m["variance_explained"] == pytest.approx(0.0, abs=1e-6)
    wrong_fve = 1 - ((x_ND - x_hat_ND) ** 2).sum() / (x_ND**2).sum()
    assert wrong_fve > 0.99


def test_perfect_reconstruction():
    x_ND = torch.randn(10, 4)
    m = reconstruction_metrics(x_ND, x_ND.clone(), torch.zeros(10, 3))
    assert m["nmse"] == 0.0
    assert m["variance_explained"] == 1.0
    assert m["l0"] == 0.0
    assert m["silent_fraction"] == 1.0 and m["silent_tokens"] == 10


def test_streaming_equals_concatenation():
    torch.manual_seed(1)
    sizes = [7, 1, 64, 30, 2]
    # A large offset makes a naive E||x||^2 - ||E x||^2 lose digits; the pairwise merge must not.
    xs = [3000.0 + 5.0 * torch.randn(n, 16) for n in sizes]
    x_hats = [x + torch.randn_like(x) for x in xs]
    fs = [torch.relu(torch.randn(n, 12) - 1.0) for n in sizes]
    recon, density = ReconstructionAccumulator(), FeatureDensityAccumulator(12, dense_threshold=0.2)
    for x, x_hat, f in zip(xs, x_hats, fs):
        recon.update(x, x_hat, f)
        density.update(f)
    streamed = {**recon.result(), **density.result()}
    whole = reconstruction_metrics(torch.cat(xs), torch.cat(x_hats), torch.cat(fs),
                                   dense_threshold=0.2)
    assert streamed.keys() == whole.keys()
    for key in whole:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-9, abs=1e-12), key
    # Independent float64 reference for the formula itself.
    x = torch.cat(xs).double()
    err = ((x - torch.cat(x_hats).double()) ** 2).sum(1).mean()
    var = ((x - x.mean(0)) ** 2).sum(1).mean()
    assert streamed["nmse"] == pytest.approx(float(err / var), rel=1e-9)


def test_silent_and_dense_fractions_carry_their_token_count():
    # 4 tokens, 5 features: f0 silent, f1 fires on all 4, f2 on 1, f3 on 3, f4 on 2.
    f_NF = torch.tensor(
        [
            [0.0, 1.0, 0.5, 1.0, 0.0],
            [0.0, 2.0, 0.0, 1.0, 0.3],
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [0.0, 3.0, 0.0, 2.0, 0.1],
        ]
    )
    density = FeatureDensityAccumulator(5, dense_threshold=0.5)
    density.update(f_NF)
    r = density.result()
    assert r["n_silent"] == 1 and r["silent_fraction"] == pytest.approx(0.2)
    # Dense: f1 (1.0) and f3 (0.75); f4 (0.5) is not above the threshold.
    assert r["n_dense"] == 2 and r["dense_fraction"] == pytest.approx(0.4)
    assert r["silent_tokens"] == r["dense_tokens"] == 4
    # Silence on a sample is never called dead: that word needs a stated window.
    assert not [k for k in r if "dead" in k]
    assert density.density_F().tolist() == [0.0, 1.0, 0.25, 0.75, 0.5]


def test_log10_histogram_bins():
    n_tokens = 1000
    f_NF = torch.zeros(n_tokens, 4)
    f_NF[:1, 0] = 1.0  # density 1e-3: the lowest edge
    f_NF[:100, 1] = 1.0  # density 1e-1
    f_NF[:, 2] = 1.0  # density 1: joins the last bin
    density = FeatureDensityAccumulator(4)
    density.update(f_NF)
    hist = density.log10_histogram(bins_per_decade=1)
    assert hist["bin_edges"] == [-3.0, -2.0, -1.0, 0.0]
    assert hist["counts"] == [1, 0, 2]
    assert hist["n_silent"] == 1 and hist["n_tokens"] == n_tokens
    fine = density.log10_histogram(bins_per_decade=5)
    assert len(fine["counts"]) == 15 and sum(fine["counts"]) == 3


def test_bad_shapes_and_empty():
    with pytest.raises(ValueError):
        ReconstructionAccumulator().update(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        ReconstructionAccumulator().result()
    with pytest.raises(ValueError):
        FeatureDensityAccumulator(3).update(torch.zeros(2, 4))
    constant = reconstruction_metrics(torch.ones(3, 2), torch.zeros(3, 2), torch.ones(3, 1))
    assert math.isnan(constant["nmse"])  # zero variance: NMSE undefined, not infinite
