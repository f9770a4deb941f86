"""Uniform samples of the bottom-k sampler: unbiased for features active on more than 2^24
rows, and exact when float64 keys tie in the bits the candidate sort uses."""

import math

import numpy as np
import pytest
import torch

from monosemantic.analysis.bottomk import (
    UNIFORM_KEYS,
    GroupedBottomK,
    keys_of_hashes,
    uniform_keys,
)


def sampled_positions(n_rows: int, n_feats: int, r: int, keys_of, store: GroupedBottomK,
                      seed: int = 0, n_chunks: int = 8) -> np.ndarray:
    """Row positions (row / n_rows) of the `r` samples of each of `n_feats` synthetic features,
    each active on all `n_rows` rows with an i.i.d. uniform 64-bit hash per entry (what
    `uniform_keys`' hash stands for), streamed in corpus order in `n_chunks` updates.

    Only the entries whose hash lies below a cutoff that admits about 16·r of them per
    feature are made: the rest have larger keys than every one of those, so they cannot be
    sampled once r of those are (asserted), and the sample is the one of all n_rows entries.
    """
    rng = np.random.default_rng(seed)
    cutoff = 16 * r * 2**64 // n_rows  # a multiple of 2^11: keys of omitted hashes >= its key
    count_G = rng.binomial(n_rows, cutoff / 2**64, size=n_feats)
    group_E = np.repeat(np.arange(n_feats), count_G)
    row_E = rng.integers(0, n_rows, size=len(group_E))
    # One entry per (feature, row); in corpus order, features ascending within a row.
    entry_E = np.unique(row_E * n_feats + group_E)
    row_E, group_E = entry_E // n_feats, entry_E % n_feats
    hash_E = rng.integers(0, cutoff, size=len(entry_E), dtype=np.uint64)
    for part in np.array_split(np.arange(len(entry_E)), n_chunks):
        key_E = keys_of(hash_E[part])
        store.update(torch.from_numpy(group_E[part]), key_E, torch.from_numpy(row_E[part]),
                     key_E.float())
    assert bool(store.filled_GR().all())
    assert float(store.keys_GR.max()) < float(keys_of(np.array([cutoff], dtype=np.uint64))[0])
    return store.rows_GR.numpy().ravel() / n_rows


@pytest.mark.parametrize("n_rows", [5 * 2**22, 2**28])
def test_uniform_sample_of_a_feature_on_over_2_24_rows_is_not_early(n_rows):
    """4,096 features on 21M or 268M rows, 4 samples each (as `interval_examples`). With keys
    of 24 bits the ~N / 2^24 entries on each key value tie and the earlier rows won: the mean
    position fell to 0.473 (21M rows: 12 standard errors) and 0.158 (268M). An unbiased
    sampler's 16,384 positions are i.i.d. uniform (distinct rows out of millions: no
    noticeable dependence), so their mean is 0.5 with standard error 1 / sqrt(12·16,384) =
    0.0023; 4 standard errors is a false alarm once in 16,000 seeds."""
    n_feats, r = 4096, 4
    pos = sampled_positions(n_rows, n_feats, r, keys_of_hashes,
                            GroupedBottomK(n_feats, r, key_dtype=UNIFORM_KEYS))
    se = 1 / math.sqrt(12 * len(pos))
    assert abs(pos.mean() - 0.5) < 4 * se, pos.mean()
    # Also the spread: the share in the first quarter is 1/4 within 4 standard errors.
    share = (pos < 0.25).mean()
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(pos)), share


def test_uniform_keys_keep_53_bits():
    """Real hashes: every key is a multiple of 2^-53, and nearly none of 2^24 (a float32's)."""
    rows = torch.arange(1 << 16)
    keys = uniform_keys(3, 1, rows, torch.full_like(rows, 7))
    assert keys.dtype == UNIFORM_KEYS and bool(((keys >= 0) & (keys < 1)).all())
    assert bool((keys * 2.0**53 == (keys * 2.0**53).floor()).all())
    assert float((keys * 2.0**24 == (keys * 2.0**24).floor()).double().mean()) < 0.001


def test_float64_keys_tied_in_their_top_bits_are_cut_by_the_full_key():
    """Many float64 keys share their top 32 bits (the candidate sort's) and differ below: each
    group keeps the r smallest by (key, row), as a brute-force sort does, although more than r
    of them arrive in one update and in no particular order."""
    n, r, groups = 400, 3, 4
    gen = torch.Generator().manual_seed(2)
    group_N = torch.randint(0, groups, (n,), generator=gen)
    # 0.75 + k·2^-40: the same top 32 bits for every k < 2^20; a few keys below and above.
    key_N = 0.75 + torch.randint(0, 50, (n,), generator=gen).double() * 2.0**-40
    key_N[torch.randperm(n, generator=gen)[:5]] = 0.25
    key_N[torch.randperm(n, generator=gen)[:40]] = 0.9
    row_N = torch.randperm(n, generator=gen)  # offer order is not row order
    store = GroupedBottomK(groups, r, key_dtype=torch.float64)
    for lo in range(0, n, 100):
        sl = slice(lo, lo + 100)
        store.update(group_N[sl], key_N[sl], row_N[sl], key_N[sl].float())
    store.sort_()
    for g in range(groups):
        want = sorted((float(key_N[i]), int(row_N[i])) for i in range(n) if group_N[i] == g)[:r]
        assert list(zip(store.keys_GR[g].tolist(), store.rows_GR[g].tolist())) == want
