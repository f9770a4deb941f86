"""Pearson correlations between the codes of two SAEs on the same tokens, streamed.

For features x (of the large SAE) and y (of the small one) over n tokens,

    r = (n·Σxy − Σx·Σy) / sqrt((n·Σx² − (Σx)²) · (n·Σy² − (Σy)²)),

so a pass accumulates n, Σx, Σx², Σy, Σy² per feature and Σxy per pair (float64), batch by
batch; memory does not grow with the tokens. Codes are sparse, so a batch costs about
(nonzero codes of the large SAE) × (columns kept per large feature).

Two layouts of Σxy:
- all pairs: a dense [F_large, F_small] matrix; each batch densifies only the small SAE's
  codes (batch rows × F_small) and multiplies the large SAE's sparse codes into it;
- candidates: for each large feature only the small features listed in `cand_LC`
  [F_large, C] (the matcher passes the C nearest by decoder cosine); the small SAE's codes
  are looked up by their sorted (row, feature) keys, so neither side is ever densified and
  memory is F_large × C.
A feature that never fires (or fires with one constant value) on the tokens has no variance:
its correlations are NaN.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from monosemantic.sae.kernels import SparseCodes


class PairMoments:
    """Sufficient statistics of the correlations between a large SAE's features (rows) and a
    small SAE's (columns); `cand_LC` None: every pair."""

    def __init__(self, n_large: int, n_small: int, cand_LC: Tensor | None = None):
        if cand_LC is not None and cand_LC.shape[0] != n_large:
            raise ValueError(f"cand_LC has {cand_LC.shape[0]} rows, not {n_large}")
        self.n_large, self.n_small = n_large, n_small
        self.cand_LC = None if cand_LC is None else cand_LC.long().cpu()
        self.n = 0
        f64 = torch.float64
        self.sum_L, self.sq_L = torch.zeros(n_large, dtype=f64), torch.zeros(n_large, dtype=f64)
        self.sum_S, self.sq_S = torch.zeros(n_small, dtype=f64), torch.zeros(n_small, dtype=f64)
        self.fires_L = torch.zeros(n_large, dtype=torch.int64)
        self.fires_S = torch.zeros(n_small, dtype=torch.int64)
        width = n_small if self.cand_LC is None else self.cand_LC.shape[1]
        self.cross = torch.zeros(n_large, width, dtype=f64)

    def update(self, large: SparseCodes, small: SparseCodes) -> None:
        """Add one batch: the codes of both SAEs on the same rows."""
        if large.n_rows != small.n_rows:
            raise ValueError(f"batches of {large.n_rows} and {small.n_rows} rows")
        large, small = _cpu(large), _cpu(small)
        self.n += large.n_rows
        _add_moments(large, self.sum_L, self.sq_L, self.fires_L)
        _add_moments(small, self.sum_S, self.sq_S, self.fires_S)
        if self.cand_LC is None:
            self.cross += _dense_cross(large, small).double()
        else:
            self.cross += _candidate_cross(large, small, self.cand_LC)

    def columns(self) -> Tensor:
        """Small-feature id of every column of `correlations()`: [F_large, width]."""
        if self.cand_LC is not None:
            return self.cand_LC
        return torch.arange(self.n_small).expand(self.n_large, self.n_small)

    def correlations(self) -> Tensor:
        """r of each accumulated pair, float64 [F_large, F_small] (all pairs) or
        [F_large, C] (candidates, in `cand_LC`'s order); NaN where either side has no
        variance."""
        n = float(self.n)
        var_L = n * self.sq_L - self.sum_L.square()
        var_S = n * self.sq_S - self.sum_S.square()
        if self.cand_LC is None:
            sum_S, var_S_cols = self.sum_S[None, :], var_S[None, :]
        else:
            sum_S, var_S_cols = self.sum_S[self.cand_LC], var_S[self.cand_LC]
        cov = n * self.cross - self.sum_L[:, None] * sum_S
        denom = var_L[:, None] * var_S_cols
        r = cov / denom.clamp_min(1e-300).sqrt()
        bad = (var_L[:, None] <= 0) | (var_S_cols <= 0)
        return torch.where(bad, torch.full_like(r, float("nan")), r.clamp(-1.0, 1.0))

    def correlation_at(self, i_N: np.ndarray, j_N: np.ndarray) -> np.ndarray:
        """r of the pairs (large i, small j); NaN for a pair not accumulated (candidates)."""
        r = self.correlations()
        i_t, j_t = torch.as_tensor(i_N, dtype=torch.long), torch.as_tensor(j_N, dtype=torch.long)
        if self.cand_LC is None:
            return r[i_t, j_t].numpy()
        match_NC = self.cand_LC[i_t] == j_t[:, None]
        found_N = match_NC.any(dim=1)
        col_N = match_NC.long().argmax(dim=1)
        out = r[i_t, col_N]
        return torch.where(found_N, out, torch.full_like(out, float("nan"))).numpy()


def _cpu(codes: SparseCodes) -> SparseCodes:
    return SparseCodes(codes.row_N.cpu(), codes.idx_N.cpu(), codes.vals_N.detach().cpu(),
                       codes.n_rows, codes.n_features)


def _add_moments(codes: SparseCodes, sum_F: Tensor, sq_F: Tensor, fires_F: Tensor) -> None:
    vals = codes.vals_N.double()
    sum_F.index_add_(0, codes.idx_N, vals)
    sq_F.index_add_(0, codes.idx_N, vals.square())
    fires_F.index_add_(0, codes.idx_N, (vals > 0).long())


def _dense_cross(large: SparseCodes, small: SparseCodes) -> Tensor:
    """Σ_b x[b, i]·y[b, j] over the batch for every pair: [F_large, F_small] (float32; a batch
    sums at most batch-rows products per entry, then the caller accumulates in float64)."""
    x_T = torch.sparse_coo_tensor(torch.stack([large.idx_N, large.row_N]),
                                  large.vals_N.float(), (large.n_features, large.n_rows),
                                  check_invariants=False)
    return torch.sparse.mm(x_T, small.dense().float())


def _candidate_cross(large: SparseCodes, small: SparseCodes, cand_LC: Tensor) -> Tensor:
    """Σ_b x[b, i]·y[b, cand[i, c]] over the batch: [F_large, C] (float64)."""
    keys = small.row_N * small.n_features + small.idx_N
    order = torch.argsort(keys)
    keys, y_vals = keys[order], small.vals_N.double()[order]
    cross = torch.zeros(cand_LC.shape, dtype=torch.float64)
    if keys.numel() == 0 or large.idx_N.numel() == 0:
        return cross
    query_NC = large.row_N[:, None] * small.n_features + cand_LC[large.idx_N]
    pos_NC = torch.searchsorted(keys, query_NC).clamp_max(keys.numel() - 1)
    y_NC = torch.where(keys[pos_NC] == query_NC, y_vals[pos_NC], 0.0)
    return cross.index_add_(0, large.idx_N, large.vals_N.double()[:, None] * y_NC)
