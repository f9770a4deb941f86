"""Sparse codes of consecutive store rows, and token windows around a peak read from them.

The analysis pass keeps three batches at once (previous, current, next) as a `RowSpan`, so
that every example found in the current batch gets its left and right context, with the
feature's activation on every token of the window, at the moment it is found. Only the active
entries are kept (sorted keys `local_row * F + feature`), so the span costs O(nnz) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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

    @classmethod
    def from_dense(cls, lo: int, f_NF: Tensor, tokens_N: Tensor, doc_ids_N: Tensor) -> SparseRows:
        """The entries f > 0 of a dense code batch whose first row is global row `lo`."""
        local_E, feats_E = (f_NF > 0).nonzero(as_tuple=True)
        return cls(lo, f_NF.shape[0], f_NF.shape[1], local_E + lo, feats_E, f_NF[local_E, feats_E],
                   tokens_N.to(torch.int64), doc_ids_N.to(torch.int64))


class RowSpan:
    """Consecutive `SparseRows` joined: lookups of f[row, feature] and of windows."""

    def __init__(self, parts: list[SparseRows]):
        self.lo = parts[0].lo
        self.n = sum(p.n for p in parts)
        self.n_features = parts[0].n_features
        self.tokens_N = torch.cat([p.tokens_N for p in parts])
        self.doc_ids_N = torch.cat([p.doc_ids_N for p in parts])
        rows_E = torch.cat([p.rows_E for p in parts])
        feats_E = torch.cat([p.feats_E for p in parts])
        # Row-major order within each part and parts in row order: the keys come sorted.
        self.keys_E = (rows_E - self.lo) * self.n_features + feats_E
        self.vals_E = torch.cat([p.vals_E for p in parts])

    def values(self, rows_Q: Tensor, feats_Q: Tensor) -> Tensor:
        """f[row, feature] for each query (0 where inactive); rows must lie in the span."""
        keys_Q = (rows_Q - self.lo) * self.n_features + feats_Q
        if len(self.keys_E) == 0:
            return torch.zeros(keys_Q.shape)
        idx_Q = torch.searchsorted(self.keys_E, keys_Q).clamp(max=len(self.keys_E) - 1)
        found_Q = self.keys_E[idx_Q] == keys_Q
        return torch.where(found_Q, self.vals_E[idx_Q], torch.zeros((), dtype=self.vals_E.dtype))

    def windows(self, rows_Q: Tensor, feats_Q: Tensor, left: int, right: int
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Windows [row - left, row + right] cut at document boundaries and at the span's ends.

        Returns (acts_QW, tokens_QW, offset_Q) with W = left + 1 + right, the window packed to
        the left (the peak at `offset_Q`), and token -1 / activation 0 in unused cells.
        A row whose document id is -1 (an inserted BOS, padding) is a document of its own.
        """
        offsets_W = torch.arange(-left, right + 1)
        local_QW = rows_Q[:, None] - self.lo + offsets_W[None, :]
        inside_QW = (local_QW >= 0) & (local_QW < self.n)
        local_QW = local_QW.clamp(0, self.n - 1)
        doc_Q = self.doc_ids_N[rows_Q - self.lo]
        same_QW = inside_QW & (self.doc_ids_N[local_QW] == doc_Q[:, None]) & (doc_Q[:, None] >= 0)
        same_QW[:, left] = True
        # Keep only the contiguous run through the peak: walk outward from it.
        right_QW = same_QW[:, left:].to(torch.int8).cumprod(dim=1).bool()
        left_QW = same_QW[:, : left + 1].flip(1).to(torch.int8).cumprod(dim=1).bool().flip(1)
        valid_QW = torch.cat([left_QW[:, :-1], right_QW], dim=1)
        n_left_Q = left_QW[:, :-1].sum(dim=1)
        # Pack to the left: cell j of the output is offset (j - n_left) from the peak.
        shift_QW = torch.arange(left + 1 + right)[None, :] - n_left_Q[:, None] + left
        keep_QW = shift_QW <= left + right
        src_QW = shift_QW.clamp(max=left + right)
        valid_QW = valid_QW.gather(1, src_QW) & keep_QW
        local_QW = local_QW.gather(1, src_QW)
        rows_QW = local_QW + self.lo
        acts_QW = self.values(rows_QW.reshape(-1), feats_Q[:, None].expand_as(rows_QW).reshape(-1)
                              ).reshape(rows_QW.shape)
        acts_QW = torch.where(valid_QW, acts_QW, torch.zeros((), dtype=acts_QW.dtype))
        tokens_QW = torch.where(valid_QW, self.tokens_N[local_QW], -1)
        return acts_QW, tokens_QW, n_left_Q
