"""Streamed Pearson correlations of SAE features with MLP neurons, and of neurons with each other.

Over n tokens, for a feature x and a neuron y,

    r = (n·Σxy − Σx·Σy) / sqrt((n·Σx² − (Σx)²) · (n·Σy² − (Σy)²)).

A pass accumulates the sums batch by batch (float64; each batch's products in float32), so
memory is F × d_mlp (features against neurons) and d_mlp × d_mlp (neurons against neurons),
whatever the tokens. The codes stay sparse: a batch costs (nonzero codes) × d_mlp for the
cross sums and rows × d_mlp² for the neurons' Gram matrix.

Neurons are dense and their means are not small against their spread, so their sums are taken
of y − c with c the first batch's mean (r does not change under a shift; the shift keeps
n·Σy² − (Σy)² from cancelling in float64 over many tokens).

A feature or neuron without variance on the tokens (a feature that never fires, or fires with
one value; a constant neuron) has no correlation: it is excluded from the maxima and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from monosemantic.sae.kernels import SparseCodes

ROW_CHUNK = 1024
"""Rows of the correlation matrix formed at once when taking maxima (bounds the temporaries at
ROW_CHUNK × columns float64)."""


class _Neurons:
    """Shifted sums of the neurons: n, Σ(y−c), Σ(y−c)², and the shift c."""

    def __init__(self, n_neurons: int):
        f64 = torch.float64
        self.n = 0
        self.shift_M: Tensor | None = None
        self.sum_M = torch.zeros(n_neurons, dtype=f64)
        self.sq_M = torch.zeros(n_neurons, dtype=f64)

    def shifted(self, y_NM: Tensor) -> Tensor:
        """y − c in float32 on y's device; c is fixed by the first call."""
        y_NM = y_NM.float()
        shift_M = self.shift_M
        if shift_M is None:
            shift_M = self.shift_M = y_NM.mean(dim=0).cpu()
        return y_NM - shift_M.to(y_NM.device)

    def add(self, ys_NM: Tensor) -> None:
        self.n += ys_NM.shape[0]
        self.sum_M += ys_NM.sum(dim=0).double().cpu()
        self.sq_M += ys_NM.square().sum(dim=0).double().cpu()

    def var_M(self) -> Tensor:
        """n²·variance (n·Σy² − (Σy)²), float64."""
        return float(self.n) * self.sq_M - self.sum_M.square()


class FeatureNeuronMoments:
    """Sums for the correlation of every feature of one SAE with every neuron of one layer."""

    def __init__(self, n_features: int, n_neurons: int):
        f64 = torch.float64
        self.neurons = _Neurons(n_neurons)
        self.sum_F = torch.zeros(n_features, dtype=f64)
        self.sq_F = torch.zeros(n_features, dtype=f64)
        self.fires_F = torch.zeros(n_features, dtype=torch.int64)
        self.cross_FM = torch.zeros(n_features, n_neurons, dtype=f64)

    @property
    def n(self) -> int:
        return self.neurons.n

    def update(self, codes: SparseCodes, y_NM: Tensor) -> None:
        """One batch: the SAE's codes and the neurons' activations on the same rows."""
        if codes.n_rows != y_NM.shape[0]:
            raise ValueError(f"codes of {codes.n_rows} rows, neurons of {y_NM.shape[0]}")
        ys_NM = self.neurons.shifted(y_NM)
        self.neurons.add(ys_NM)
        vals_N = codes.vals_N.detach()
        idx_N = codes.idx_N.to(vals_N.device)
        self.sum_F.index_add_(0, idx_N.cpu(), vals_N.double().cpu())
        self.sq_F.index_add_(0, idx_N.cpu(), vals_N.double().square().cpu())
        self.fires_F.index_add_(0, idx_N.cpu(), (vals_N != 0).long().cpu())
        x_FN = torch.sparse_coo_tensor(torch.stack([idx_N, codes.row_N.to(vals_N.device)]),
                                       vals_N.float(), (codes.n_features, codes.n_rows),
                                       check_invariants=False)
        self.cross_FM += torch.sparse.mm(x_FN, ys_NM.to(vals_N.device)).double().cpu()

    def var_F(self) -> Tensor:
        return float(self.n) * self.sq_F - self.sum_F.square()

    def correlations(self, lo: int = 0, hi: int | None = None) -> Tensor:
        """r of features [lo, hi) with every neuron, float64 [hi − lo, M]; NaN where either
        side has no variance."""
        hi = self.cross_FM.shape[0] if hi is None else hi
        n = float(self.n)
        cov = n * self.cross_FM[lo:hi] - self.sum_F[lo:hi, None] * self.neurons.sum_M[None, :]
        return _pearson(cov, self.var_F()[lo:hi], self.neurons.var_M())


class NeuronGram:
    """Sums for the correlation of every neuron of a layer with every other."""

    def __init__(self, n_neurons: int):
        self.neurons = _Neurons(n_neurons)
        self.gram_MM = torch.zeros(n_neurons, n_neurons, dtype=torch.float64)

    @property
    def n(self) -> int:
        return self.neurons.n

    def update(self, y_NM: Tensor) -> None:
        ys_NM = self.neurons.shifted(y_NM)
        self.neurons.add(ys_NM)
        self.gram_MM += (ys_NM.T @ ys_NM).double().cpu()

    def correlations(self, lo: int = 0, hi: int | None = None) -> Tensor:
        """r of neurons [lo, hi) with every neuron, float64 [hi − lo, M]; the diagonal (a
        neuron with itself) and pairs without variance are NaN."""
        m = self.gram_MM.shape[0]
        hi = m if hi is None else hi
        n, sum_M, var_M = float(self.n), self.neurons.sum_M, self.neurons.var_M()
        cov = n * self.gram_MM[lo:hi] - sum_M[lo:hi, None] * sum_M[None, :]
        r = _pearson(cov, var_M[lo:hi], var_M)
        rows = torch.arange(lo, hi)
        r[rows - lo, rows] = float("nan")
        return r


def _pearson(cov: Tensor, var_rows: Tensor, var_cols: Tensor) -> Tensor:
    r = cov / (var_rows[:, None] * var_cols[None, :]).clamp_min(1e-300).sqrt()
    bad = (var_rows[:, None] <= 0) | (var_cols[None, :] <= 0)
    return torch.where(bad, torch.full_like(r, float("nan")), r.clamp(-1.0, 1.0))


@dataclass
class BestMatch:
    """Per row (feature or neuron), its largest |r| with any column and where."""

    max_abs_r: np.ndarray
    """float64 [rows]; NaN where the row has no correlation (no variance, or no column with
    variance)."""
    r_at_max: np.ndarray
    """The signed r at that column; NaN likewise."""
    best: np.ndarray
    """int64 [rows]: the column (neuron) of the largest |r|; -1 where NaN."""


def best_matches(correlations: Callable[[int, int], Tensor], n_rows: int) -> BestMatch:
    """`correlations(lo, hi)` -> r rows [lo, hi); the best column of each row, in chunks of
    ROW_CHUNK rows."""
    max_abs = np.full(n_rows, np.nan)
    signed = np.full(n_rows, np.nan)
    best = np.full(n_rows, -1, dtype=np.int64)
    for lo in range(0, n_rows, ROW_CHUNK):
        hi = min(n_rows, lo + ROW_CHUNK)
        r = correlations(lo, hi)
        filled = torch.nan_to_num(r.abs(), nan=-1.0)
        top, col = filled.max(dim=1)
        ok = top >= 0
        max_abs[lo:hi] = torch.where(ok, top, torch.full_like(top, float("nan"))).numpy()
        picked = r.gather(1, col[:, None]).squeeze(1)
        signed[lo:hi] = torch.where(ok, picked, torch.full_like(picked, float("nan"))).numpy()
        best[lo:hi] = torch.where(ok, col, torch.full_like(col, -1)).numpy()
    return BestMatch(max_abs, signed, best)
