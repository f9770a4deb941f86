"""Co-occurrence neighbours: for each feature, the features that most often fire on the same tokens.

Score: the Ochiai coefficient (the cosine of the two binary firing vectors)
    s(i, j) = c_ij / sqrt(c_i · c_j),
c_ij = tokens where both fire, c_i = tokens where i fires. It is the geometric mean of P(j | i)
and P(i | j), so it corrects for density both ways: a dense feature that fires on nearly every
token has P(j | i) ≈ 1 for every i but a small P(i | j), and does not top every list (as it does
under P(j | i)); unlike lift / PMI (P(j | i) / P(j)), two rare features that meet once do not get
the largest score, provided pairs must meet at least `min_count` times (default 3). It is
symmetric and lies in [0, 1].

Bounded memory: pass 1 keeps the active features of a uniform sample of at most `max_tokens`
rows (a bottom-k sample over random row keys, so it is uniform whatever the corpus length;
every row when the analysed range is shorter, and then the counts are exact). The sample costs
8 bytes per active entry, about 16 · max_tokens · L0 bytes with the compaction buffer
(L0 = mean active features per token), independent of F. The counts are computed at the end by
sparse products in feature blocks whose output is capped at `block_pairs` nonzeros, so no F × F
matrix exists: memory O(max_tokens · L0 + block_pairs), time O(max_tokens · L0²).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


class RowSample:
    """A uniform sample of at most `capacity` rows, keeping the active features of each."""

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity = capacity
        self._gen = torch.Generator().manual_seed(seed)
        self._keys: list[Tensor] = []   # per kept row: its random key
        self._rows: list[Tensor] = []   # per kept row: its global row
        self._e_rows: list[Tensor] = []  # per entry: global row
        self._e_feats: list[Tensor] = []  # per entry: feature (int32)
        self._n_kept = 0
        self._threshold = float("inf")  # rows must draw a key below this to enter

    def add(self, lo: int, n: int, rows_E: Tensor, feats_E: Tensor) -> None:
        """Offer rows [lo, lo + n) whose active entries are (rows_E, feats_E)."""
        if self.capacity == 0 or n == 0:
            return
        keys_N = torch.rand(n, generator=self._gen)
        enter_N = keys_N < self._threshold
        if not bool(enter_N.any()):
            return
        self._keys.append(keys_N[enter_N])
        self._rows.append(torch.arange(lo, lo + n)[enter_N])
        keep_E = enter_N[rows_E - lo]
        self._e_rows.append(rows_E[keep_E])
        self._e_feats.append(feats_E[keep_E].to(torch.int32))
        self._n_kept += int(enter_N.sum())
        if self._n_kept > 2 * self.capacity:  # amortised: compact at twice the capacity
            self._compact()

    def _compact(self) -> None:
        keys, rows = torch.cat(self._keys), torch.cat(self._rows)
        e_rows, e_feats = torch.cat(self._e_rows), torch.cat(self._e_feats)
        if len(keys) > self.capacity:
            kth = torch.kthvalue(keys, self.capacity).values
            keep = keys <= kth
            keys, rows = keys[keep], rows[keep]
            self._threshold = float(kth)
            # Rows are unique and increasing within each batch, but not across the lists.
            order = torch.argsort(rows)
            pos = torch.searchsorted(rows[order], e_rows).clamp(max=len(rows) - 1)
            member = rows[order][pos] == e_rows
            e_rows, e_feats = e_rows[member], e_feats[member]
        self._keys, self._rows, self._e_rows, self._e_feats = [keys], [rows], [e_rows], [e_feats]
        self._n_kept = len(keys)

    def entries(self) -> tuple[int, Tensor, Tensor]:
        """(rows kept, local row index [E], feature [E]) of the final sample."""
        self._compact()
        rows = self._rows[0]
        local_E = torch.searchsorted(rows.sort().values, self._e_rows[0])
        return len(rows), local_E, self._e_feats[0]

    def nbytes(self) -> int:
        tensors = self._keys + self._rows + self._e_rows + self._e_feats
        return sum(t.numel() * t.element_size() for t in tensors)


def cooccurrence_neighbours(n_rows: int, local_E: Tensor, feats_E: Tensor, n_features: int,
                            n_neighbours: int = 10, min_count: int = 3,
                            block_pairs: int = 1 << 22) -> tuple[Tensor, Tensor, Tensor]:
    """Top co-occurring features by Ochiai score from sampled (row, feature) entries.

    Returns (ids [F, m], scores [F, m], pair counts [F, m]) sorted by score descending, ties by
    id; empty slots hold id -1 and score 0. Pairs meeting fewer than `min_count` times are left
    out.
    """
    import scipy.sparse as sp

    m = n_neighbours
    ids_FM = torch.full((n_features, m), -1, dtype=torch.int64)
    scores_FM = torch.zeros(n_features, m)
    counts_FM = torch.zeros(n_features, m, dtype=torch.int64)
    if m == 0 or len(feats_E) == 0:
        return ids_FM, scores_FM, counts_FM
    rows = local_E.numpy().astype(np.int64)
    feats = feats_E.numpy().astype(np.int64)
    A = sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, feats)),
                      shape=(n_rows, n_features))
    A.sum_duplicates()
    At = A.T.tocsr()
    count_F = np.asarray(A.sum(axis=0)).ravel().astype(np.float64)
    # Output nonzeros of feature i's row are at most the entries of the rows where i fires.
    row_nnz = np.diff(A.indptr).astype(np.int64)
    pairs_F = At @ row_nnz
    for lo, hi in _blocks(pairs_F, block_pairs):
        C = (At[lo:hi] @ A).tocoo()
        i, j, c = C.row + lo, C.col, C.data
        keep = (i != j) & (c >= min_count)
        i, j, c = i[keep], j[keep], c[keep]
        score = c / np.sqrt(count_F[i] * count_F[j])
        # Sort by feature, then score descending, then neighbour id: take the first m per feature.
        order = np.lexsort((j, -score, i))
        i, j, c, score = i[order], j[order], c[order], score[order]
        starts = np.searchsorted(i, i, side="left")
        rank = np.arange(len(i)) - starts
        top = rank < m
        fi, slot = torch.from_numpy(i[top].astype(np.int64)), torch.from_numpy(rank[top])
        ids_FM[fi, slot] = torch.from_numpy(j[top].astype(np.int64))
        scores_FM[fi, slot] = torch.from_numpy(score[top]).float()
        counts_FM[fi, slot] = torch.from_numpy(c[top].astype(np.int64))
    return ids_FM, scores_FM, counts_FM


def _blocks(pairs_F: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive feature ranges whose summed pair bound stays under `budget` (at least one
    feature per block)."""
    n = len(pairs_F)
    lo = 0
    cum = np.cumsum(pairs_F)
    while lo < n:
        base = cum[lo - 1] if lo > 0 else 0
        hi = int(np.searchsorted(cum, base + budget, side="right"))
        hi = max(hi, lo + 1)
        yield lo, min(hi, n)
        lo = hi
