"""Approximate (NN-descent) vs exact decoder-cosine neighbours on small clustered data.

Slow: pynndescent compiles its numba kernels on first use (a minute or more on a loaded CPU).
"""

import pytest
import torch

from monosemantic.analysis.decoder import (
    approx_nearest_by_cosine,
    decoder_neighbours,
    nearest_by_cosine,
)


def clustered_directions(n_feat=1500, d=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(60, d, generator=gen)
    return centres[torch.arange(n_feat) % 60] + 0.4 * torch.randn(n_feat, d, generator=gen)


@pytest.mark.slow
def test_approximate_neighbours_agree_with_exact():
    W_FD = clustered_directions()
    exact_ids, _exact_cos = nearest_by_cosine(W_FD, 10)
    approx_ids, approx_cos = approx_nearest_by_cosine(W_FD, 10)
    assert approx_ids.shape == (1500, 10)
    assert not bool((approx_ids == torch.arange(1500)[:, None]).any())
    recall = sum(len(set(a) & set(e)) for a, e in zip(approx_ids.tolist(), exact_ids.tolist()))
    assert recall / exact_ids.numel() > 0.95
    # Cosines are true cosines of the pairs returned, sorted.
    unit = W_FD / W_FD.norm(dim=1, keepdim=True)
    true_cos = (unit[:, None, :] * unit[approx_ids]).sum(-1)
    assert torch.allclose(approx_cos, true_cos, atol=1e-4)
    assert bool((approx_cos[:, :-1] >= approx_cos[:, 1:] - 1e-6).all())
    # The dispatcher: exact up to the limit, approximate above it.
    ids, _ = decoder_neighbours(W_FD, 10, exact_max=2000)
    assert torch.equal(ids, exact_ids)
    ids, _ = decoder_neighbours(W_FD, 10, exact_max=100)
    assert torch.equal(ids, approx_ids)


