"""Co-occurrence neighbours (Ochiai) from the pass's row sample against brute force."""

import pytest
import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.cooccur import RowSample, cooccurrence_neighbours
from monosemantic.analysis.onepass import PassOptions, stats_pass


def sparse_codes(n_rows=500, n_feat=30, seed=0):
    """Binary-ish codes with correlated groups: features 0-4 share a latent, so they co-fire."""
    gen = torch.Generator().manual_seed(seed)
    f_NF = torch.rand(n_rows, n_feat, generator=gen) * (torch.rand(n_rows, n_feat,
                                                                     generator=gen) < 0.1)
    latent_N = torch.rand(n_rows, generator=gen) < 0.2
    f_NF[:, :5] += latent_N[:, None] * (torch.rand(n_rows, 5, generator=gen) < 0.8)
    f_NF[:, -1] = 1.0  # a dense feature, active everywhere
    f_NF[:, -2] = 0.0  # a dead one
    return f_NF


def brute_force(f_NF, m, min_count):
    B_NF = (f_NF > 0).double()
    C_FF = B_NF.T @ B_NF
    c_F = C_FF.diag()
    score_FF = C_FF / (c_F[:, None] * c_F[None, :]).sqrt().clamp(min=1e-12)
    out = []
    for i in range(f_NF.shape[1]):
        cands = [(-float(score_FF[i, j]), j) for j in range(f_NF.shape[1])
                 if j != i and C_FF[i, j] >= min_count]
        out.append([(j, -s, int(C_FF[i, j])) for s, j in sorted(cands)[:m]])
    return out


def entries_of(f_NF):
    rows_E, feats_E = (f_NF > 0).nonzero(as_tuple=True)
    return rows_E, feats_E


@pytest.mark.parametrize("block_pairs", [1 << 23, 7])
def test_neighbours_equal_brute_force(block_pairs):
    f_NF = sparse_codes()
    rows_E, feats_E = entries_of(f_NF)
    sample = RowSample(capacity=10_000)
    for lo in range(0, len(f_NF), 64):  # batches, as the pass offers them
        sel = (rows_E >= lo) & (rows_E < lo + 64)
        sample.add(lo, min(64, len(f_NF) - lo), rows_E[sel], feats_E[sel])
    n_rows, local_E, s_feats_E = sample.entries()
    assert n_rows == len(f_NF)
    ids_FM, scores_FM, counts_FM = cooccurrence_neighbours(n_rows, local_E, s_feats_E,
                                                           f_NF.shape[1], 4, min_count=3,
                                                           block_pairs=block_pairs)
    for i, want in enumerate(brute_force(f_NF, 4, 3)):
        n = len(want)
        assert ids_FM[i, :n].tolist() == [j for j, _, _ in want]
        assert scores_FM[i, :n].tolist() == pytest.approx([s for _, s, _ in want], abs=1e-6)
        assert counts_FM[i, :n].tolist() == [c for _, _, c in want]
        assert bool((ids_FM[i, n:] == -1).all())
    # The correlated group finds itself; the dense feature does not top their lists.
    for i in range(5):
        assert set(ids_FM[i, :4].tolist()) == set(range(5)) - {i}
    assert bool((ids_FM[28] == -1).all())


def test_row_sample_is_uniform_and_bounded():
    n_rows, cap = 20_000, 1_000
    f_NF = torch.zeros(n_rows, 3)
    f_NF[:, 0] = 1.0
    f_NF[torch.arange(n_rows) % 2 == 0, 1] = 1.0
    rows_E, feats_E = entries_of(f_NF)
    sample = RowSample(capacity=cap, seed=3)
    for lo in range(0, n_rows, 512):
        sel = (rows_E >= lo) & (rows_E < lo + 512)
        sample.add(lo, min(512, n_rows - lo), rows_E[sel], feats_E[sel])
        assert sample._n_kept <= 2 * cap + 512
    kept_rows = torch.cat(sample._rows)
    n, local_E, s_feats_E = sample.entries()
    rows = torch.cat(sample._rows).sort().values
    assert n == cap == len(torch.unique(rows))
    # Each kept row brings exactly its own entries.
    assert len(local_E) == cap + int((rows % 2 == 0).sum())
    assert bool((s_feats_E[local_E == 0] >= 0).all())
    # Uniform over the corpus: mean row within 4 standard errors of the middle.
    assert abs(float(rows.double().mean()) - n_rows / 2) < 4 * n_rows / (12 * cap) ** 0.5
    assert len(kept_rows) >= cap


def test_stats_pass_collects_exact_sample_on_short_ranges():
    f_NF = sparse_codes(n_rows=300, n_feat=12, seed=1)
    tokens_N = torch.arange(300) % 17
    doc_ids_N = torch.arange(300) // 50
    batches = [RowBatch(f_NF[i:i + 64], tokens_N[i:i + 64], doc_ids_N[i:i + 64],
                        torch.zeros(len(tokens_N[i:i + 64]), dtype=torch.int64))
               for i in range(0, 300, 64)]
    opts = PassOptions(top_k=2, random_examples=1, zero_examples=1, n_intervals=0,
                       window_left=2, window_right=2, cooccur_tokens=1000)
    result = stats_pass(iter(batches), lambda x: x, 12, opts)
    n, local_E, feats_E = result.cooccur.entries()
    dense = torch.zeros(n, 12)
    dense[local_E, feats_E.long()] = 1.0
    assert n == 300 and torch.equal(dense, (f_NF > 0).float())
    off = stats_pass(iter(batches), lambda x: x, 12,
                     PassOptions(n_intervals=0, window_left=2, window_right=2,
                                 cooccur_neighbours=0))
    assert off.cooccur is None
