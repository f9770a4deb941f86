"""Sparse codes of consecutive store rows, and token windows around a peak read from them.

The analysis pass keeps three batches at once (previous, current, next) as a `RowSpan`, so
that every example found in the current batch gets its left and right context, with the
feature's activation on every token of the window, at the moment it is found. Only the active
entries are kept, so the span costs O(nnz) memory.

Window lookups cost O(log nnz) per example plus O(1) per active cell, not per cell: each part
keeps its entries also in feature-major order (key `feature · 2^40 + row`), so the entries of
one feature inside a row range are one contiguous slice found by two binary searches.
Document bounds are precomputed per span (the run of equal document ids through each row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from monosemantic.sae.kernels import SparseCodes

ROW_BITS = 40
"""(feature, row) entries are keyed feature · 2^ROW_BITS + row (here and in
`bottomk.uniform_keys`): row ids stay below 2^40, features below 2^23."""
_ROW_SPAN = 1 << ROW_BITS


@dataclass
class SparseRows:
    """Active codes of rows [lo, lo + n) with their tokens and document ids."""

    lo: int
    n: int
    n_features: int
    rows_E: Tensor
    """Global row of each active entry (ascending, then feature ascending)."""
    feats_E: Tensor
    vals_E: Tensor
    tokens_N: Tensor
    doc_ids_N: Tensor
    _by_feature: tuple[Tensor, Tensor, Tensor] | None = field(default=None, init=False)

    def by_feature(self) -> tuple[Tensor, Tensor, Tensor]:
        """(keys feature·2^40 + row, rows, values) sorted by feature, then row (computed once)."""
        if self._by_feature is None:
            order = torch.sort(self.feats_E, stable=True).indices  # rows stay ascending
            rows_E = self.rows_E[order]
            self._by_feature = (self.feats_E[order] * _ROW_SPAN + rows_E, rows_E,
                                self.vals_E[order])
        return self._by_feature

    @classmethod
    def from_codes(cls, lo: int, codes: SparseCodes, tokens_N: Tensor, doc_ids_N: Tensor
                   ) -> SparseRows:
        """Rows listed as `SparseCodes` (rows ascending), the first being global row `lo`, on
        the CPU with float32 values."""
        return cls(lo, codes.n_rows, codes.n_features, codes.row_N.cpu() + lo,
                   codes.idx_N.cpu(), codes.vals_N.float().cpu(), tokens_N.to(torch.int64),
                   doc_ids_N.to(torch.int64))

    @classmethod
    def from_dense(cls, lo: int, f_NF: Tensor, tokens_N: Tensor, doc_ids_N: Tensor) -> SparseRows:
        """The entries f > 0 of a dense code batch whose first row is global row `lo`."""
        return cls.from_codes(lo, SparseCodes.positive(f_NF), tokens_N, doc_ids_N)

    @classmethod
    def join(cls, parts: list[SparseRows]) -> SparseRows:
        """Consecutive parts (each starting where the previous ends) as one."""
        if len(parts) == 1:
            return parts[0]
        for before, after in zip(parts, parts[1:]):
            if after.lo != before.lo + before.n:
                raise ValueError(f"rows [{before.lo}, {before.lo + before.n}) and "
                                 f"[{after.lo}, ...) are not consecutive")
        return cls(parts[0].lo, sum(p.n for p in parts), parts[0].n_features,
                   *(torch.cat([getattr(p, name) for p in parts])
                     for name in ("rows_E", "feats_E", "vals_E", "tokens_N", "doc_ids_N")))


class RowSpan:
    """Consecutive `SparseRows` joined: windows of (row, feature) queries read from them."""

    def __init__(self, parts: list[SparseRows]):
        self.parts = parts
        self.lo = parts[0].lo
        self.n = sum(p.n for p in parts)
        self.n_features = parts[0].n_features
        self._bounds: tuple[Tensor, Tensor, Tensor] | None = None

    def _doc_bounds(self) -> tuple[Tensor, Tensor, Tensor]:
        """(tokens, first local row, last local row) of the document run through each row; a
        row with document id -1 is a run of its own."""
        if self._bounds is None:
            tokens_N = torch.cat([p.tokens_N for p in self.parts])
            doc_N = torch.cat([p.doc_ids_N for p in self.parts])
            new_N = torch.ones(self.n, dtype=torch.bool)
            new_N[1:] = (doc_N[1:] != doc_N[:-1]) | (doc_N[1:] < 0) | (doc_N[:-1] < 0)
            idx_N = torch.arange(self.n)
            start_N = torch.where(new_N, idx_N, 0).cummax(dim=0).values
            last_N = torch.ones(self.n, dtype=torch.bool)
            last_N[:-1] = new_N[1:]
            end_N = torch.where(last_N, idx_N, self.n - 1).flip(0).cummin(dim=0).values.flip(0)
            self._bounds = (tokens_N, start_N, end_N)
        return self._bounds

    def values(self, rows_Q: Tensor, feats_Q: Tensor) -> Tensor:
        """f[row, feature] for each query (0 where inactive); rows must lie in the span."""
        return self._gather(rows_Q, rows_Q, feats_Q, 1)[:, 0]

    def _gather(self, lo_Q: Tensor, hi_Q: Tensor, feats_Q: Tensor, width: int) -> Tensor:
        """acts [Q, width]: f[lo + j, feature] for the global rows lo..hi of each query."""
        acts_QW = torch.zeros(len(feats_Q), width, dtype=self.parts[0].vals_E.dtype)
        for part in self.parts:
            if part.n == 0 or lo_Q.numel() == 0:
                continue
            # Only the queries whose rows reach into this part: a window is mostly inside
            # one batch, so this skips two of the three binary searches for nearly all.
            q_P = ((lo_Q < part.lo + part.n) & (hi_Q >= part.lo)).nonzero().squeeze(1)
            if q_P.numel() == 0:
                continue
            keys_E, rows_E, vals_E = part.by_feature()
            base_P = feats_Q[q_P] * _ROW_SPAN
            lo_P = lo_Q[q_P]
            first_P = torch.searchsorted(keys_E, base_P + lo_P)
            stop_P = torch.searchsorted(keys_E, base_P + hi_Q[q_P], right=True)
            counts_P = stop_P - first_P
            total = int(counts_P.sum())
            if total == 0:
                continue
            p_T = torch.repeat_interleave(torch.arange(len(q_P)), counts_P)
            offset_T = torch.arange(total) - torch.repeat_interleave(
                counts_P.cumsum(0) - counts_P, counts_P)
            e_T = first_P[p_T] + offset_T
            acts_QW[q_P[p_T], rows_E[e_T] - lo_P[p_T]] = vals_E[e_T]
        return acts_QW

    def windows(self, rows_Q: Tensor, feats_Q: Tensor, left: int, right: int
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Windows [row - left, row + right] cut at document boundaries and at the span's ends.

        Returns (acts_QW, tokens_QW, offset_Q) with W = left + 1 + right, the window packed to
        the left (the peak at `offset_Q`), and token -1 / activation 0 in unused cells.
        A row whose document id is -1 (an inserted BOS, padding) is a document of its own.
        """
        tokens_N, start_N, end_N = self._doc_bounds()
        local_Q = rows_Q - self.lo
        lo_Q = torch.maximum(local_Q - left, start_N[local_Q])
        hi_Q = torch.minimum(local_Q + right, end_N[local_Q])
        width = left + 1 + right
        cells_QW = lo_Q[:, None] + torch.arange(width)[None, :]
        valid_QW = cells_QW <= hi_Q[:, None]
        tokens_QW = torch.where(valid_QW, tokens_N[cells_QW.clamp(max=self.n - 1)], -1)
        acts_QW = self._gather(lo_Q + self.lo, hi_Q + self.lo, feats_Q, width)
        return acts_QW, tokens_QW, local_Q - lo_Q
