"""The streaming analysis passes against brute force on the dense code matrix of the same rows."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.bottomk import GroupedBottomK
from monosemantic.analysis.onepass import PassOptions, analyze_batches
from monosemantic.analysis.windows import RowSpan, SparseRows
from monosemantic.errors import UserError

PLANTED_TOKEN = 7
N_ROWS, D, F = 600, 6, 12


def corpus(seed: int = 0):
    """Rows of documents of random lengths; column 0 of the activations is nonzero exactly on
    the planted token, with a magnitude that grows along the corpus."""
    gen = torch.Generator().manual_seed(seed)
    tokens_N = torch.randint(0, 20, (N_ROWS,), generator=gen)
    lengths = torch.randint(3, 40, (N_ROWS,), generator=gen)
    doc_ids_N = torch.repeat_interleave(torch.arange(N_ROWS), lengths)[:N_ROWS]
    positions_N = torch.zeros(N_ROWS, dtype=torch.int64)
    acts_ND = torch.randn(N_ROWS, D, generator=gen)
    acts_ND[:, 0] = torch.where(tokens_N == PLANTED_TOKEN, 1.0 + torch.arange(N_ROWS) / N_ROWS, 0.0)
    return acts_ND, tokens_N, doc_ids_N, positions_N


def encoder(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    W_DF = torch.randn(D, F, generator=gen)
    b_F = torch.full((F,), -0.8)
    W_DF[:, 0] = 0.0
    W_DF[0, 0], b_F[0] = 2.0, -0.5  # feature 0 = the planted token

    def encode(x_BD):
        return torch.relu(x_BD @ W_DF + b_F)

    return encode


def batches_of(data, size: int):
    acts_ND, tokens_N, doc_ids_N, positions_N = data
    return lambda: (
        RowBatch(
            acts_ND[i : i + size],
            tokens_N[i : i + size],
            doc_ids_N[i : i + size],
            positions_N[i : i + size],
        )
        for i in range(0, N_ROWS, size)
    )


@pytest.fixture(scope="module")
def setup():
    data, encode = corpus(), encoder()
    opts = PassOptions(
        top_k=5,
        random_examples=3,
        zero_examples=2,
        n_intervals=4,
        interval_examples=2,
        hist_bins=6,
        hist_decades=2.0,
        window_left=4,
        window_right=3,
    )
    result = analyze_batches(batches_of(data, 64), encode, F, opts)
    return data, encode(data[0]), result


def brute_window(f_NF, doc_ids_N, row, feat, left, right):
    lo = row
    while lo > max(row - left, 0) and doc_ids_N[lo - 1] == doc_ids_N[row]:
        lo -= 1
    hi = row
    while hi < min(row + right, N_ROWS - 1) and doc_ids_N[hi + 1] == doc_ids_N[row]:
        hi += 1
    return list(range(lo, hi + 1)), row - lo


def test_statistics_equal_brute_force(setup):
    _data, f_NF, result = setup
    assert result.n_tokens == N_ROWS
    assert torch.equal(result.count_F, (f_NF > 0).sum(0))
    assert torch.allclose(result.max_F, f_NF.max(0).values)
    assert torch.allclose(result.density_F, (f_NF > 0).double().mean(0))
    expected_mean = torch.where((f_NF > 0).any(0), f_NF.sum(0) / (f_NF > 0).sum(0).clamp(min=1), 0)
    assert torch.allclose(result.mean_active_F.float(), expected_mean, atol=1e-5)


def test_planted_feature_fires_only_on_its_token(setup):
    (_, tokens_N, _, _), _f_NF, result = setup
    assert result.count_F[0] == int((tokens_N == PLANTED_TOKEN).sum())
    top_rows = result.top.rows_GR[0]
    assert bool((tokens_N[top_rows] == PLANTED_TOKEN).all())
    # Magnitudes grow along the corpus: the top examples are the last planted rows.
    planted = (tokens_N == PLANTED_TOKEN).nonzero().squeeze(1)
    assert top_rows.tolist() == planted.flip(0)[:5].tolist()


def test_top_examples_and_windows_equal_brute_force(setup):
    (_, tokens_N, doc_ids_N, _), f_NF, result = setup
    opts = result.options
    for feat in range(F):
        order = sorted(range(N_ROWS), key=lambda r: (-float(f_NF[r, feat]), r))
        active = [r for r in order if f_NF[r, feat] > 0][: opts.top_k]
        assert result.top.rows_GR[feat][: len(active)].tolist() == active
        for slot, row in enumerate(active):
            rows, peak = brute_window(
                f_NF, doc_ids_N, row, feat, opts.window_left, opts.window_right
            )
            assert int(result.top.offset_GR[feat, slot]) == peak
            n = len(rows)
            assert result.top.tokens_GRW[feat, slot, :n].tolist() == tokens_N[rows].tolist()
            assert bool((result.top.tokens_GRW[feat, slot, n:] == -1).all())
            assert torch.allclose(result.top.acts_GRW[feat, slot, :n], f_NF[rows, feat])
            assert float(result.top.vals_GR[feat, slot]) == pytest.approx(float(f_NF[row, feat]))


def test_interval_shares_histogram_and_samples(setup):
    _, f_NF, result = setup
    n_int = result.options.n_intervals
    counts_FI = result.interval_counts_FI
    assert torch.equal(counts_FI.sum(1), result.count_F)
    shares_FI = counts_FI / counts_FI.sum(1, keepdim=True).clamp(min=1)
    fired = result.count_F > 0
    assert torch.allclose(
        shares_FI[fired].sum(1), torch.ones(int(fired.sum()), dtype=shares_FI.dtype)
    )
    edges_FI1 = result.interval_edges_FI1()
    for feat in range(F):
        vals = f_NF[:, feat][f_NF[:, feat] > 0].double()
        idx = (vals / result.max_F[feat].double() * n_int).floor().clamp(max=n_int - 1).long()
        assert counts_FI[feat].tolist() == torch.bincount(idx, minlength=n_int).tolist()
        assert int(result.hist_FH[feat].sum()) == len(vals)
        for j in range(n_int):
            slots = result.intervals.filled_GR()[feat * n_int + j]
            assert int(slots.sum()) == min(counts_FI[feat, j], result.options.interval_examples)
            sampled = result.intervals.vals_GR[feat * n_int + j][slots].double()
            assert bool(
                (
                    (sampled >= edges_FI1[feat, j] - 1e-6)
                    & (sampled <= edges_FI1[feat, j + 1] + 1e-6)
                ).all()
            )


def test_random_and_zero_examples(setup):
    _, f_NF, result = setup
    for feat in range(F):
        filled = result.random.filled_GR()[feat]
        rows = result.random.rows_GR[feat][filled]
        assert int(filled.sum()) == min(int(result.count_F[feat]), 3)
        assert bool((f_NF[rows, feat] > 0).all())
        zero_rows = result.zero.rows_GR[feat][result.zero.filled_GR()[feat]]
        assert len(zero_rows) > 0 and bool((f_NF[zero_rows, feat] == 0).all())
        assert len(set(zero_rows.tolist())) == len(zero_rows)


def test_batch_size_does_not_change_the_result(setup):
    data, _, result = setup
    other = analyze_batches(batches_of(data, 37), encoder(), F, result.options)
    assert torch.equal(other.top.rows_GR, result.top.rows_GR)
    assert torch.equal(other.top.acts_GRW, result.top.acts_GRW)
    assert torch.equal(other.interval_counts_FI, result.interval_counts_FI)


@pytest.mark.parametrize("ahead", [0, 3])
def test_encoding_ahead_does_not_change_the_result(setup, ahead):
    data, _, result = setup
    opts = dataclasses.replace(result.options, encode_ahead=ahead)
    other = analyze_batches(batches_of(data, 64), encoder(), F, opts)
    for name in ("rows_GR", "keys_GR", "acts_GRW", "tokens_GRW"):
        assert torch.equal(getattr(other.top, name), getattr(result.top, name))
        assert torch.equal(getattr(other.random, name), getattr(result.random, name))
    assert torch.equal(other.intervals.rows_GR, result.intervals.rows_GR)
    assert torch.equal(other.hist_FH, result.hist_FH)


@pytest.mark.parametrize("workers", [1, 3])
def test_encode_workers_do_not_change_the_result(setup, workers):
    data, _, result = setup
    opts = dataclasses.replace(result.options, encode_workers=workers, encode_rows=64)
    other = analyze_batches(batches_of(data, 256), encoder(), F, opts)
    assert torch.equal(other.count_F, result.count_F)
    for name in ("rows_GR", "acts_GRW", "tokens_GRW"):
        assert torch.equal(getattr(other.top, name), getattr(result.top, name))
    assert torch.equal(other.intervals.rows_GR, result.intervals.rows_GR)
    assert torch.equal(other.hist_FH, result.hist_FH)


def test_encoding_in_row_chunks_does_not_change_the_result(setup):
    """Batches of 128 encoded 64 rows at a time: the same GEMMs as the 64-row batches. (Much
    smaller chunks can change codes in the last bit: BLAS kernels differ for tiny shapes.)"""
    data, _, result = setup
    opts = dataclasses.replace(result.options, encode_rows=64)
    other = analyze_batches(batches_of(data, 128), encoder(), F, opts)
    assert torch.equal(other.count_F, result.count_F)
    assert torch.equal(other.top.acts_GRW, result.top.acts_GRW)
    assert torch.equal(other.intervals.rows_GR, result.intervals.rows_GR)


def test_an_encode_error_reaches_the_caller(setup):
    data, _, result = setup
    calls = []

    def failing(x_BD):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory in encode")
        return encoder()(x_BD)

    n_batches = len(list(batches_of(data, 64)()))
    with pytest.raises(RuntimeError, match="out of memory in encode"):
        analyze_batches(batches_of(data, 64), failing, F, result.options)
    # The encode stopped at the error (workers may have run a batch or two beyond it).
    assert 3 <= len(calls) <= 5 < n_batches


def test_bottomk_keeps_smallest_keys_per_group():
    store = GroupedBottomK(3, 2)
    gen = torch.Generator().manual_seed(0)
    groups, keys = torch.randint(0, 3, (200,), generator=gen), torch.rand(200, generator=gen)
    for lo in range(0, 200, 17):
        sl = slice(lo, lo + 17)
        store.update(groups[sl], keys[sl], torch.arange(200)[sl], keys[sl])
    store.sort_()
    for g in range(3):
        expected = keys[groups == g].sort().values[:2]
        assert torch.equal(store.keys_GR[g], expected)


def test_bottomk_breaks_ties_by_row_for_negative_and_positive_keys():
    """Keys from a few values of both signs (many exact ties, as bf16 activations give): each
    group keeps the r smallest by (key, row), as a brute-force sort does."""
    n, r, groups = 600, 5, 4
    gen = torch.Generator().manual_seed(1)
    group_N = torch.randint(0, groups, (n,), generator=gen)
    key_N = torch.tensor([-0.0, 0.0, 3.0])[torch.randint(0, 3, (n,), generator=gen)]
    key_N[torch.randperm(n, generator=gen)[:6]] = -1.5  # rarer than r per group: the cut
    # then falls among the zeros of both signs, which compare equal.
    store = GroupedBottomK(groups, r)
    for lo in range(0, n, 64):
        sl = slice(lo, lo + 64)
        store.update(group_N[sl], key_N[sl], torch.arange(n)[sl], key_N[sl])
    store.sort_()
    for g in range(groups):
        rows = [
            row for _, row in sorted((float(key_N[i]), i) for i in range(n) if group_N[i] == g)
        ][:r]
        assert store.rows_GR[g].tolist() == rows


def test_windows_stop_at_document_boundaries_and_missing_docs():
    tokens_N = torch.arange(10)
    doc_ids_N = torch.tensor([0, 0, 0, 1, 1, -1, 2, 2, 2, 2])
    f_NF = torch.ones(10, 1)
    span = RowSpan([SparseRows.from_dense(0, f_NF, tokens_N, doc_ids_N)])
    acts, toks, off = span.windows(torch.tensor([4, 5, 7]), torch.tensor([0, 0, 0]), 2, 2)
    assert toks.tolist() == [[3, 4, -1, -1, -1], [5, -1, -1, -1, -1], [6, 7, 8, 9, -1]]
    assert off.tolist() == [1, 0, 1]
    assert acts.sum(1).tolist() == [2, 1, 4]


def test_window_larger_than_batch_is_refused():
    with pytest.raises(UserError, match="batch size"):
        PassOptions(window_left=100).validate(batch_size=64)
