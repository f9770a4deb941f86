"""`jumprelu` (Rajamanoharan et al. 2024, "Jumping Ahead"): `f = z·H(z − θ)`, L0 penalty.

θ = exp(log_threshold), one per feature, kept in float32 even under autocast. The step
function has zero derivative almost everywhere, so both functions use the paper's
straight-through pseudo-derivatives with a rectangle kernel K(u) = 1[|u| < 1/2] of width ε
(`jumprelu_bandwidth`):

    JumpReLU:  ∂f/∂z = H(z − θ)       ∂f/∂θ = −(θ/ε)·K((z − θ)/ε)
    Heaviside: ∂H/∂z = 0              ∂H/∂θ = −(1/ε)·K((z − θ)/ε)

So the L0 term trains θ only (through the kernel) and the reconstruction trains both.
loss = ‖x − x̂‖² + l0_coefficient·l1_scale·Σ_i H(z_i − θ_i) (mean over the batch).
Decoder rows are kept at unit norm (as in the paper).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.sae.base import (
    SAE,
    BatchGroup,
    SAEOutput,
    TrainCodes,
    check_non_negative,
    check_positive,
)

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).float()


class JumpReLUFunction(torch.autograd.Function):
    """z·H(z − θ) with the pseudo-derivative −(θ/ε)·K((z − θ)/ε) for θ."""

    @staticmethod
    def forward(ctx: Any, z_BF: torch.Tensor, theta_F: torch.Tensor,
                bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(z_BF, theta_F)
        ctx.bandwidth = bandwidth
        return z_BF * (z_BF.float() > theta_F).to(z_BF.dtype)

    @staticmethod
    def backward(ctx: Any, grad_BF: torch.Tensor):
        z_BF, theta_F = ctx.saved_tensors
        eps = ctx.bandwidth
        above_BF = z_BF.float() > theta_F
        grad_z = grad_BF * above_BF.to(grad_BF.dtype)
        kernel_BF = _rectangle((z_BF.float() - theta_F) / eps)
        grad_theta = (-(theta_F / eps) * kernel_BF * grad_BF.float()).sum(0)
        return grad_z, grad_theta, None


class HeavisideFunction(torch.autograd.Function):
    """H(z − θ) with zero z-gradient and the pseudo-derivative −(1/ε)·K((z − θ)/ε) for θ."""

    @staticmethod
    def forward(ctx: Any, z_BF: torch.Tensor, theta_F: torch.Tensor,
                bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(z_BF, theta_F)
        ctx.bandwidth = bandwidth
        return (z_BF.float() > theta_F).float()

    @staticmethod
    def backward(ctx: Any, grad_BF: torch.Tensor):
        z_BF, theta_F = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel_BF = _rectangle((z_BF.float() - theta_F) / eps)
        grad_theta = (-(1.0 / eps) * kernel_BF * grad_BF.float()).sum(0)
        return None, grad_theta, None


class JumpReLUSAE(SAE):
    """JumpReLU SAE with a learned per-feature threshold and an L0 penalty."""

    unit_norm_decoder = True
    sparsity_coefficient_field = "l0_coefficient"
    saelens_architecture = "jumprelu"
    supports_cross_layer = True

    feature_dims = {**SAE.feature_dims, "log_threshold": 0}

    @classmethod
    def default_lr(cls, cfg: SAEConfig) -> float:
        return 7e-5

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        check_non_negative(cfg, "l0_coefficient")
        check_positive(cfg, "jumprelu_init_threshold", "jumprelu_bandwidth")

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.log_threshold = torch.nn.Parameter(
            torch.full((cfg.n_features,), math.log(cfg.jumprelu_init_threshold),
                       dtype=torch.float32))

    @torch.no_grad()
    def reset_buffers(self) -> None:
        self.log_threshold.fill_(math.log(self.cfg.jumprelu_init_threshold))

    def _apply(self, fn, *args: Any, **kwargs: Any):
        # `.to(bfloat16)`/`.half()` would round θ; keep it float32 whatever the module's dtype.
        exact = self.log_threshold.data
        out = super()._apply(fn, *args, **kwargs)
        if self.log_threshold.dtype != torch.float32:
            self.log_threshold.data = exact.to(self.log_threshold.device)
        return out

    @property
    def threshold(self) -> torch.Tensor:
        """θ = exp(log_threshold), float32."""
        return torch.exp(self.log_threshold.float())

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        return JumpReLUFunction.apply(self.pre_acts(x_BD), self.threshold,
                                      self.cfg.jumprelu_bandwidth)

    def _encode_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        z_BS = self.pre_acts_slice(x_BD, lo, hi)
        # θ of every feature, then sliced: exp over a slice could take another code path
        # (vectorised body vs scalar tail) for some elements and round them differently.
        theta_S = self.threshold[lo:hi]
        return z_BS * (z_BS.float() > theta_S)  # z·1 or z·0, as JumpReLUFunction.forward

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None) -> SAEOutput:
        # `group` needs nothing: the MSE and the L0 are means of per-row terms. A feature shard
        # sums its partial decode (`decode`) and its L0 with the others'.
        y_BD = self.target_of(x_BD, target_BD)
        codes = self.train_codes(x_BD, l1_scale, group)
        assert codes.f_BF is not None
        x_hat_BD = self.add_skip(self.decode(codes.f_BF), x_BD)
        mse = self.mse(y_BD, x_hat_BD)
        return SAEOutput(x_hat_BD=x_hat_BD, f_BF=codes.f_BF, losses={"mse": mse, **codes.sparsity},
                         loss=mse + codes.sparsity["l0"])

    def train_codes(self, x_BD: torch.Tensor, l1_scale: float = 1.0,
                    group: BatchGroup | None = None) -> TrainCodes:
        """Dense codes z·H(z − θ) and the weighted L0 penalty (straight-through gradients)."""
        z_BF = self.pre_acts(x_BD)
        theta_F = self.threshold
        eps = self.cfg.jumprelu_bandwidth
        f_BF = JumpReLUFunction.apply(z_BF, theta_F, eps)
        l0 = self._sum_shards(HeavisideFunction.apply(z_BF, theta_F, eps).sum(dim=-1).mean())
        sparsity = self.cfg.l0_coefficient * l1_scale * l0
        return TrainCodes(None, f_BF, z_BF.detach(), {"l0": sparsity})

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**super().inference_state(), "threshold": self.threshold.detach()}

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_inference_state(state)
        with torch.no_grad():
            # A zero threshold (possible in SAELens files) becomes log 0 = -inf, exp(-inf) = 0.
            self.log_threshold.copy_(torch.log(state["threshold"].float().clamp_min(0)))
