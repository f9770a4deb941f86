"""The core extras: shrinkage, reconstruction bias, firing shares, decoder redundancy.

Plain functions of tensors (tested on tiny inputs with known answers); bench/metrics.py wraps
them into the per-run metrics.
"""

from __future__ import annotations

import torch
from torch import Tensor


def shrinkage(x_ND: Tensor, x_hat_ND: Tensor) -> dict[str, float]:
    """`mean_norm_ratio` = mean over tokens of ‖x̂‖/‖x‖ (tokens with x = 0 left out) and
    `ratio_of_mean_norms` = mean ‖x̂‖ / mean ‖x‖: below 1, the SAE shrinks its inputs."""
    x_norm_N = x_ND.double().norm(dim=1)
    x_hat_norm_N = x_hat_ND.double().norm(dim=1)
    nonzero_N = x_norm_N > 0
    ratio = (x_hat_norm_N[nonzero_N] / x_norm_N[nonzero_N]).mean()
    return {"mean_norm_ratio": float(ratio),
            "ratio_of_mean_norms": float(x_hat_norm_N.mean() / x_norm_N.mean())}


def reconstruction_bias(x_ND: Tensor, x_hat_ND: Tensor) -> dict[str, float]:
    """`relative_reconstruction_bias` = Σ‖x̂‖² / Σ⟨x, x̂⟩ (SAEBench's figure, after Gao et al.:
    the γ minimising Σ‖x̂/γ − x‖²; below 1 means shrinkage) and `optimal_scale` = its inverse,
    Σ⟨x, x̂⟩ / Σ‖x̂‖², the γ minimising Σ‖γ·x̂ − x‖²."""
    x, x_hat = x_ND.double(), x_hat_ND.double()
    dot = float((x * x_hat).sum())
    sq = float(x_hat.square().sum())
    return {"relative_reconstruction_bias": sq / dot if dot else float("nan"),
            "optimal_scale": dot / sq if sq else float("nan")}


def firing_shares(f_NF: Tensor, thresholds: tuple[float, ...] = (0.01, 0.1)
                  ) -> dict[str, float]:
    """Share of features that fire (code ≠ 0) on more than each threshold's fraction of the
    tokens (`share_firing_over_1pct`, ...), and the share silent on all of them."""
    density_F = (f_NF != 0).double().mean(dim=0)
    out = {f"share_firing_over_{_pct(t)}": float((density_F > t).double().mean())
           for t in thresholds}
    out["share_silent"] = float((density_F == 0).double().mean())
    return out


def _pct(t: float) -> str:
    return f"{t * 100:g}pct".replace(".", "_")


@torch.no_grad()
def decoder_redundancy(W_dec_FD: Tensor, block: int = 1024) -> dict[str, float]:
    """`max_cosine`: the largest cosine between two distinct decoder rows, and
    `mean_max_cosine`: the mean over features of their largest cosine to any other
    (blocked: memory 8·block·F bytes)."""
    w_FD = W_dec_FD.detach().double().cpu()
    w_FD = w_FD / w_FD.norm(dim=1, keepdim=True).clamp_min(1e-30)
    n = w_FD.shape[0]
    if n < 2:
        return {"max_cosine": float("nan"), "mean_max_cosine": float("nan")}
    best_F = torch.empty(n, dtype=torch.float64)
    for lo in range(0, n, block):
        cos_BF = w_FD[lo:lo + block] @ w_FD.T
        rows = torch.arange(cos_BF.shape[0])
        cos_BF[rows, rows + lo] = -float("inf")
        best_F[lo:lo + block] = cos_BF.max(dim=1).values
    return {"max_cosine": float(best_F.max()), "mean_max_cosine": float(best_F.mean())}


def sample_reconstruction(x_ND: Tensor, x_hat_ND: Tensor, f_NF: Tensor) -> dict[str, float]:
    """Variance explained (1 − Σ‖x − x̂‖² / Σ‖x − mean x‖²) and L0 on the sample."""
    x, x_hat = x_ND.double(), x_hat_ND.double()
    sq_dev = float((x - x.mean(dim=0)).square().sum())
    sq_err = float((x - x_hat).square().sum())
    return {"variance_explained": 1 - sq_err / sq_dev if sq_dev else float("nan"),
            "l0": float((f_NF != 0).double().sum(dim=1).mean())}
