"""Reconstruction and sparsity metrics, accumulated in float64 over any number of batches.

Formulas (DESIGN.md §6):

- NMSE = E‖x − x̂‖² / E‖x − E[x]‖²  (the denominator subtracts the mean of x over all
  tokens);
- fraction of variance explained = 1 − NMSE;
- L0 = mean over tokens of the number of features with f_i ≠ 0;
- feature density_i = (tokens where f_i ≠ 0) / tokens; silent: density 0 on the tokens
  evaluated; dense: density > threshold. A feature silent on a small sample is not dead: dead
  (no activation in a window of N tokens) is the trainer's figure (`train/dead.py`), or the
  analysis pass's over the tokens it read.

The accumulators merge per-batch statistics exactly (Chan et al.'s pairwise update for the
variance), so the metrics over many batches equal the metrics over their concatenation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

NMSE_FORMULA = "NMSE = E||x - x_hat||^2 / E||x - E[x]||^2 (expectations over held-out tokens)"
FVE_FORMULA = "variance_explained = 1 - NMSE"
L0_FORMULA = "L0 = mean over tokens of #{i : f_i != 0}"
DENSITY_FORMULA = ("density_i = #{tokens : f_i != 0} / #tokens over the tokens evaluated "
                   "(silent_tokens = dense_tokens); silent: density == 0, a sample figure, not "
                   "dead (a live feature rarer than 1 / silent_tokens is silent); dense: "
                   "density > dense_threshold")
DEAD_FORMULA = ("dead: no activation in the last dead_window_tokens training tokens (the "
                "trainer's counters at the end of training; 0 until the run has seen that many "
                "tokens)")


@dataclass
class ReconstructionAccumulator:
    """Streaming NMSE / variance explained / L0 over batches of `x_ND`, `x_hat_ND`, `f_NF`."""

    n_tokens: int = 0
    """Rows seen so far."""
    mean_D: torch.Tensor | None = None
    """Running mean of x (float64)."""
    sq_dev: float = 0.0
    """Σ‖x − mean‖² over rows seen so far (the variance numerator, float64)."""
    sq_err: float = 0.0
    """Σ‖x − x̂‖² over rows seen so far."""
    active_count: float = 0.0
    """Σ over rows of the number of nonzero features."""

    def update(self, x_ND: torch.Tensor, x_hat_ND: torch.Tensor,
               f_NF: torch.Tensor | None = None) -> None:
        """Add one batch; `f_NF` (feature activations) is needed for L0 and may be omitted."""
        if x_ND.shape != x_hat_ND.shape or x_ND.ndim != 2:
            raise ValueError(f"x {tuple(x_ND.shape)} and x_hat {tuple(x_hat_ND.shape)} must both "
                             "be [N, D]")
        n_b = x_ND.shape[0]
        if n_b == 0:
            return
        x_ND = x_ND.detach().to(torch.float64)
        x_hat_ND = x_hat_ND.detach().to(torch.float64)
        self.sq_err += float(((x_ND - x_hat_ND) ** 2).sum())
        if f_NF is not None:
            if f_NF.shape[0] != n_b:
                raise ValueError(f"f has {f_NF.shape[0]} rows, x has {n_b}")
            self.active_count += float((f_NF != 0).sum())
        batch_mean_D = x_ND.mean(dim=0)
        batch_sq_dev = float(((x_ND - batch_mean_D) ** 2).sum())
        if self.mean_D is None:
            self.mean_D, self.sq_dev, self.n_tokens = batch_mean_D, batch_sq_dev, n_b
            return
        # Pairwise merge of (count, mean, Σ squared deviation): exact, and no cancellation
        # from E‖x‖² − ‖E x‖² when the mean is large compared with the spread.
        mean_D = self.mean_D.to(x_ND.device)
        total = self.n_tokens + n_b
        delta_D = batch_mean_D - mean_D
        self.sq_dev += batch_sq_dev + float((delta_D**2).sum()) * self.n_tokens * n_b / total
        self.mean_D = mean_D + delta_D * (n_b / total)
        self.n_tokens = total

    def result(self) -> dict[str, float]:
        """`nmse`, `variance_explained`, `mse` (per token, summed over D), `l0`, `n_tokens`."""
        if self.n_tokens == 0:
            raise ValueError("no rows were accumulated")
        nmse = self.sq_err / self.sq_dev if self.sq_dev > 0 else math.nan
        return {
            "nmse": nmse,
            "variance_explained": 1.0 - nmse,
            "mse": self.sq_err / self.n_tokens,
            "l0": self.active_count / self.n_tokens,
            "n_tokens": self.n_tokens,
        }


@dataclass
class FeatureDensityAccumulator:
    """Per-feature firing counts over an eval pass: silent / dense fractions (each with the
    number of tokens it covers), log10-density histogram."""

    n_features: int
    """Dictionary size F."""
    dense_threshold: float = 0.1
    """A feature is dense when it fires on more than this fraction of tokens."""
    n_tokens: int = 0
    """Rows seen so far."""
    fire_count_F: torch.Tensor = field(init=False)
    """Tokens on which each feature was nonzero (int64)."""

    def __post_init__(self) -> None:
        self.fire_count_F = torch.zeros(self.n_features, dtype=torch.int64)

    def update(self, f_NF: torch.Tensor) -> None:
        """Add one batch of feature activations."""
        if f_NF.ndim != 2 or f_NF.shape[1] != self.n_features:
            raise ValueError(f"expected f of shape [N, {self.n_features}], got {tuple(f_NF.shape)}")
        self.fire_count_F += (f_NF != 0).sum(dim=0).to(device="cpu", dtype=torch.int64)
        self.n_tokens += f_NF.shape[0]

    def density_F(self) -> torch.Tensor:
        """Fraction of tokens on which each feature fired (float64)."""
        if self.n_tokens == 0:
            raise ValueError("no rows were accumulated")
        return self.fire_count_F.to(torch.float64) / self.n_tokens

    def result(self) -> dict[str, float | int]:
        """`silent_fraction`, `n_silent`, `silent_tokens`: features that never fired on the
        `silent_tokens` tokens seen (not called dead: the sample may be small);
        `dense_fraction`, `n_dense`, `dense_threshold`, `dense_tokens`; `n_features`."""
        density_F = self.density_F()
        n_silent = int((density_F == 0).sum())
        n_dense = int((density_F > self.dense_threshold).sum())
        return {
            "silent_fraction": n_silent / self.n_features,
            "n_silent": n_silent,
            "silent_tokens": self.n_tokens,
            "dense_fraction": n_dense / self.n_features,
            "n_dense": n_dense,
            "dense_threshold": self.dense_threshold,
            "dense_tokens": self.n_tokens,
            "n_features": self.n_features,
        }

    def log10_histogram(self, bins_per_decade: int = 5) -> dict[str, list[float] | list[int] | int]:
        """Histogram of log10(density) over the features that fired; those silent on the
        `n_tokens` tokens seen are counted apart (`n_silent`).

        Bins run from log10(1 / n_tokens) (one firing, the smallest density measurable) up to 0,
        with edges on multiples of 1 / bins_per_decade.
        """
        density_F = self.density_F()
        fired = density_F > 0
        low = math.floor(-math.log10(self.n_tokens) * bins_per_decade) / bins_per_decade
        n_bins = max(1, round(-low * bins_per_decade))
        edges = torch.linspace(low, 0.0, n_bins + 1, dtype=torch.float64)
        log_density = torch.log10(density_F[fired])
        # Bin i holds edges[i] <= v < edges[i+1]; v == 0 (fires on every token) joins the last bin.
        index = torch.bucketize(log_density, edges, right=True) - 1
        counts = torch.bincount(index.clamp(0, n_bins - 1), minlength=n_bins)
        return {
            "bin_edges": [round(float(e), 6) for e in edges],
            "counts": [int(c) for c in counts],
            "n_silent": int((~fired).sum()),
            "n_tokens": self.n_tokens,
        }


def reconstruction_metrics(
    x_ND: torch.Tensor, x_hat_ND: torch.Tensor, f_NF: torch.Tensor, dense_threshold: float = 0.1
) -> dict[str, float | int]:
    """NMSE, variance explained, MSE, L0, silent and dense fractions of one set of rows."""
    recon = ReconstructionAccumulator()
    recon.update(x_ND, x_hat_ND, f_NF)
    density = FeatureDensityAccumulator(f_NF.shape[1], dense_threshold=dense_threshold)
    density.update(f_NF)
    return {**recon.result(), **density.result()}
