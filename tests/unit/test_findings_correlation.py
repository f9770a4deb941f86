"""Streamed Pearson correlations between two code matrices equal numpy's on the whole matrix."""

import numpy as np
import pytest
import torch

from monosemantic.findings.correlation import PairMoments
from monosemantic.sae.kernels import SparseCodes


def _codes(n_rows: int, n_feat: int, density: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    f = torch.rand(n_rows, n_feat, generator=gen) * (torch.rand(n_rows, n_feat, generator=gen)
                                                     < density)
    f[:, 0] = 0.0  # a silent feature: no variance, NaN correlations
    return f


def _streamed(x_NL, y_NS, cand=None, batch=37):
    moments = PairMoments(x_NL.shape[1], y_NS.shape[1], cand)
    for lo in range(0, x_NL.shape[0], batch):
        moments.update(SparseCodes.positive(x_NL[lo:lo + batch]),
                       SparseCodes.positive(y_NS[lo:lo + batch]))
    return moments


def _brute(x_NL, y_NS):
    both = np.corrcoef(np.concatenate([x_NL.numpy(), y_NS.numpy()], axis=1).astype(np.float64),
                       rowvar=False)
    return both[:x_NL.shape[1], x_NL.shape[1]:]


@pytest.fixture(scope="module")
def codes():
    x = _codes(500, 24, 0.15, 1)
    y = _codes(500, 10, 0.3, 2)
    y[:, 3] = x[:, 5] * 2 + x[:, 7]  # correlated with two large features
    return x, y


def test_all_pairs_match_numpy(codes):
    x, y = codes
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = _brute(x, y)
    moments = _streamed(x, y)
    got = moments.correlations().numpy()
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) < 1e-6  # a batch's products sum in float32
    assert moments.n == 500
    assert moments.fires_L.tolist() == (x > 0).sum(0).tolist()
    assert got[5, 3] > 0.5


def test_candidates_match_numpy_and_look_up_pairs(codes):
    x, y = codes
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = _brute(x, y)
    gen = torch.Generator().manual_seed(3)
    cand = torch.stack([torch.randperm(10, generator=gen)[:4] for _ in range(24)])
    moments = _streamed(x, y, cand)
    got = moments.correlations().numpy()
    want = np.take_along_axis(expected, cand.numpy(), axis=1)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) < 1e-9
    i = np.array([2, 2])
    j = np.array([int(cand[2, 1]), int(next(s for s in range(10) if s not in cand[2].tolist()))])
    at = moments.correlation_at(i, j)
    assert at[0] == pytest.approx(expected[2, j[0]], abs=1e-9) and np.isnan(at[1])
