"""Data-dependent initial values of the decoder bias b_dec (`SAEConfig.b_dec_init`)."""

from __future__ import annotations

import torch

B_DEC_INITS: tuple[str, ...] = ("zero", "mean", "median")
"""zero: b_dec = 0; mean: the rows' mean; median: their geometric median (Weiszfeld)."""


@torch.no_grad()
def initial_b_dec(rows_ND: torch.Tensor, how: str) -> torch.Tensor:
    """b_dec [D] from the rows it decodes to, per `B_DEC_INITS` (float32)."""
    if how == "zero":
        return torch.zeros(rows_ND.shape[-1])
    if how == "mean":
        return rows_ND.detach().to(torch.float64).mean(0).float()
    if how == "median":
        return geometric_median(rows_ND).float()
    raise ValueError(f"b_dec_init must be one of {B_DEC_INITS}, got {how!r}")


@torch.no_grad()
def geometric_median(x_ND: torch.Tensor, max_iter: int = 200, tol: float = 1e-7) -> torch.Tensor:
    """Point minimising Σ_n ‖x_n − y‖ (Weiszfeld iterations from the mean, in float64)."""
    points_ND = x_ND.detach().to(torch.float64)
    y_D = points_ND.mean(0)
    for _ in range(max_iter):
        # Weights 1/distance; the clamp keeps a point that coincides with y from dividing by 0.
        w_N = 1.0 / (points_ND - y_D).norm(dim=1).clamp_min(1e-12)
        y_next_D = (w_N[:, None] * points_ND).sum(0) / w_N.sum()
        shift = (y_next_D - y_D).norm()
        y_D = y_next_D
        if shift <= tol * (1.0 + y_D.norm()):
            break
    return y_D
