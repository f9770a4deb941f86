"""Pearson, Spearman and average ranks against brute-force definitions (ties included)."""

from __future__ import annotations

import math

import pytest
import torch

from monosemantic.steer.attribution import uniform_sample
from monosemantic.steer.correlation import average_ranks, pearson, spearman


def brute_ranks(values):
    """1 + (number below) + (ties other than itself) / 2: the mean rank of a tie group."""
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2
            for v in values]


def brute_pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


@pytest.mark.parametrize("values", [
    [3.0, 1.0, 3.0, 2.0, 3.0, 0.0],
    [5.0, 5.0, 5.0, 5.0],
    [0.0, -1.5, 2.0, -1.5, 7.0, 0.0, 0.0],
    [1.0],
])
def test_average_ranks_match_brute_force(values):
    assert average_ranks(values).tolist() == brute_ranks(values)


def test_spearman_is_pearson_of_brute_force_ranks_with_ties():
    gen = torch.Generator().manual_seed(1)
    # Rounded to few values so that both series carry many ties.
    a = torch.randint(0, 5, (40,), generator=gen).double().tolist()
    b = [x + float(torch.randint(0, 3, (1,), generator=gen)) for x in a]
    expected = brute_pearson(brute_ranks(a), brute_ranks(b))
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    # Ties matter: ranking by position in the sorted order (no averaging) gives another value.
    naive = [float(i) for i in torch.tensor(a).argsort(stable=True).argsort().tolist()]
    assert brute_pearson(naive, brute_ranks(b)) != pytest.approx(expected, abs=1e-6)


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(200, generator=gen).round(decimals=1)
    b = (a + torch.randn(200, generator=gen)).round(decimals=1)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


def test_pearson_signs():
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_monotone_but_nonlinear_is_spearman_one():
    a = [0.1, 0.5, 1.0, 2.0, 8.0]
    b = [x ** 5 for x in a]
    assert spearman(a, b) == pytest.approx(1.0)
    assert pearson(a, b) < 0.99


def test_degenerate_series_give_none():
    assert pearson([1.0], [2.0]) is None and spearman([1.0], [2.0]) is None
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert spearman([4.0, 4.0], [1.0, 2.0]) is None
    with pytest.raises(ValueError, match="different lengths"):
        pearson([1.0, 2.0], [1.0])


def test_uniform_sample_is_uniform_and_seeded():
    assert uniform_sample(5, 5, seed=0) is None and uniform_sample(3, 8, seed=0) is None
    first = uniform_sample(20, 5, seed=7)
    assert first.tolist() == sorted(set(first.tolist())) and len(first) == 5
    assert torch.equal(first, uniform_sample(20, 5, seed=7))
    counts = torch.zeros(20)
    n_seeds = 4000
    for seed in range(n_seeds):
        counts[uniform_sample(20, 5, seed)] += 1
    # Each index is drawn with probability 5/20; binomial sd = sqrt(4000 · 0.25 · 0.75) ≈ 27.
    assert (counts - n_seeds * 0.25).abs().max() < 6 * 27.4
