"""Sparse decode: `Σ_j vals[b, j] · W_dec[idx[b, j]]` touching only the active decoder rows.

`F.embedding_bag(mode="sum", per_sample_weights=...)` gathers the active rows and sums them in
one kernel; its backward gives the exact gradient for the values and writes the decoder gradient
only into the active rows (the other rows get zeros), so it matches `f_BF @ W_dec` exactly while
costing O(B·k·d) instead of O(B·F·d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sparse_decode_fixed(idx_BK: torch.Tensor, vals_BK: torch.Tensor,
                        W_dec_FD: torch.Tensor) -> torch.Tensor:
    """Rows `Σ_j vals[b, j] · W_dec[idx[b, j]]` for a fixed number k of codes per row → [B, d]."""
    # per_sample_weights must share the weight's dtype (vals may be bf16 under autocast).
    return F.embedding_bag(idx_BK, W_dec_FD, per_sample_weights=vals_BK.to(W_dec_FD.dtype),
                           mode="sum")


def sparse_decode_ragged(row_N: torch.Tensor, idx_N: torch.Tensor, vals_N: torch.Tensor,
                         W_dec_FD: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Like `sparse_decode_fixed` for a variable number of codes per row.

    `row_N` gives each code's row and must be sorted ascending (as `nonzero` returns it).
    Rows without a code come out as zeros.
    """
    counts_B = torch.bincount(row_N, minlength=n_rows)
    offsets_B = torch.cumsum(counts_B, 0) - counts_B
    return F.embedding_bag(idx_N, W_dec_FD, offsets=offsets_B,
                           per_sample_weights=vals_N.to(W_dec_FD.dtype), mode="sum")


def scatter_codes(idx_BK: torch.Tensor, vals_BK: torch.Tensor, n_features: int) -> torch.Tensor:
    """Dense codes f [B, F] with `vals` at `idx` and zeros elsewhere (differentiable in vals)."""
    f_BF = vals_BK.new_zeros(vals_BK.shape[0], n_features)
    return f_BF.scatter(1, idx_BK, vals_BK)
