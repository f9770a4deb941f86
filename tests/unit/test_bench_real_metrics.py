"""The per-run metrics of `bench RUN ...` on tiny tensors with known answers."""

import pytest
import torch

from monosemantic.bench.consistency import best_cosines, match_decoders
from monosemantic.bench.extras import (
    decoder_redundancy,
    firing_shares,
    reconstruction_bias,
    sample_reconstruction,
    shrinkage,
)
from monosemantic.bench.probing import balanced_split, probe_task, top_features
from monosemantic.errors import UserError


def test_shrinkage_of_a_scaled_reconstruction():
    x_ND = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    s = shrinkage(x_ND, 0.5 * x_ND)
    assert s["mean_norm_ratio"] == pytest.approx(0.5)
    assert s["ratio_of_mean_norms"] == pytest.approx(0.5)
    # A zero input row is left out of the per-token mean (no division by zero).
    x_ND[0] = 0
    assert shrinkage(x_ND, 0.5 * x_ND)["mean_norm_ratio"] == pytest.approx(0.5)


def test_reconstruction_bias_and_its_inverse():
    x_ND = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    b = reconstruction_bias(x_ND, 0.8 * x_ND)
    assert b["relative_reconstruction_bias"] == pytest.approx(0.8)
    assert b["optimal_scale"] == pytest.approx(1.25)
    # Orthogonal noise added to x̂ leaves the optimal scale's numerator unchanged.
    x = torch.tensor([[1.0, 0.0]])
    b = reconstruction_bias(x, torch.tensor([[2.0, 2.0]]))
    assert b["optimal_scale"] == pytest.approx(2 / 8)
    assert b["relative_reconstruction_bias"] == pytest.approx(8 / 2)


def test_firing_shares_count_features_over_each_threshold():
    f_NF = torch.zeros(100, 4)
    f_NF[:50, 0] = 1.0   # 50 %
    f_NF[:5, 1] = 2.0    # 5 %
    f_NF[:1, 2] = 0.5    # 1 %: not over 1 %
    shares = firing_shares(f_NF)
    assert shares["share_firing_over_1pct"] == pytest.approx(0.5)
    assert shares["share_firing_over_10pct"] == pytest.approx(0.25)
    assert shares["share_silent"] == pytest.approx(0.25)


def test_decoder_redundancy_finds_the_closest_pair():
    W_FD = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 3.0]])
    r = decoder_redundancy(W_FD, block=2)  # the blocks must not change the answer
    assert r["max_cosine"] == pytest.approx(0.6)
    assert r["mean_max_cosine"] == pytest.approx((0.6 + 0.6 + 0.0) / 3)


def test_sample_reconstruction_of_a_perfect_sae():
    x_ND = torch.randn(30, 5, generator=torch.Generator().manual_seed(2))
    f_NF = torch.zeros(30, 10)
    f_NF[:, :3] = 1.0
    r = sample_reconstruction(x_ND, x_ND.clone(), f_NF)
    assert r["variance_explained"] == pytest.approx(1.0)
    assert r["l0"] == pytest.approx(3.0)


def test_consistency_of_a_permuted_copy_is_one():
    W_FD = torch.randn(64, 16, generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(4))
    m = match_decoders(W_FD, 2.0 * W_FD[perm])
    assert m["method"] == "hungarian" and m["n_matched"] == 64
    assert m["mean_cosine"] == pytest.approx(1.0)
    assert m["share_above_0.9"] == 1.0
    fallback = match_decoders(W_FD, W_FD[perm], max_features=10)
    assert fallback["method"].startswith("best match")
    assert fallback["mean_cosine"] == pytest.approx(1.0)


def test_hungarian_is_one_to_one_where_best_match_is_not():
    a = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert best_cosines(a, b).tolist() == pytest.approx([1.0, 0.9 / (0.82 ** 0.5)])
    m = match_decoders(a, b)
    # Both rows of A want b_0; one of them must take b_1.
    assert m["share_above_0.9"] == 0.5


def _task(n: int = 200, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y_N = torch.randint(0, 2, (n,), generator=gen).to(torch.int8)
    f_NF = torch.rand(n, 20, generator=gen)
    f_NF[:, 7] = y_N.float() * 3.0  # feature 7 is the label
    return y_N, f_NF


def test_a_perfect_feature_gives_a_perfect_probe():
    y_N, f_NF = _task()
    split = balanced_split(y_N, "t", max_per_class=60, min_per_class=10, test_fraction=0.25,
                           seed=0)
    assert (split.y_train == 1).sum() == (split.y_train == 0).sum() == 45
    assert set(split.train) & set(split.test) == set()
    assert top_features(f_NF[split.train].numpy(), split.y_train, 1).tolist() == [7]
    result = probe_task(f_NF, torch.randn(200, 4), split, [1, 2], seed=0)
    assert result["sae"]["1"]["features"] == [7]
    assert result["sae"]["1"]["accuracy"] == 1.0 and result["sae"]["2"]["accuracy"] == 1.0
    assert result["n_per_class"] == 60
    # Random raw activations carry no label: far from perfect.
    assert result["raw_accuracy"] < 0.9


def test_sampling_is_seeded():
    y_N, _ = _task()
    a = balanced_split(y_N, "t", 50, 10, 0.2, seed=5)
    b = balanced_split(y_N, "t", 50, 10, 0.2, seed=5)
    c = balanced_split(y_N, "t", 50, 10, 0.2, seed=6)
    assert a.train.tolist() == b.train.tolist() and a.train.tolist() != c.train.tolist()


def test_a_task_with_one_class_is_an_error():
    y_N = torch.tensor([1] * 50 + [-1] * 10, dtype=torch.int8)
    with pytest.raises(UserError, match="task 'keyword' has 50 positive and 0 negative"):
        balanced_split(y_N, "keyword", 100, 5, 0.25, 0)
