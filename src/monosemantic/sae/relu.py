"""`relu`: the Scaling Monosemanticity recipe (Anthropic, April 2024 training update).

Inputs are scaled by one scalar so E‖x‖² = d (the trainer does this; `save_sae` folds the scale
in). `f = ReLU(W_enc·x + b_enc)`, `x̂ = b_dec + f·W_dec`,
loss = ‖x − x̂‖² + λ·l1_scale·Σ_i f_i‖W_dec[i]‖₂ (sum over d and F, mean over the batch;
a crosscoder's ‖W_dec[i]‖ is the sum of its sites' norms, `SAE.penalty_norms_F`).
Decoder norms are free during training; the penalty weighs each code by its row norm.

One deviation from the paper's init (biases 0): b_dec starts at the mean of the first training
batch and b_enc at −b_dec·W_enc (`b_dec_init`, default "mean"; "zero" is the paper's). Adam
moves b_dec by about lr per step, so from 0 it takes thousands of steps to reach a residual
stream's mean (on the demo's Gemma store, coordinates up to 15 in the normalised units); a
shorter run spends its features on the mean instead (docs/scaling-laws.md).

Two exact paths for the same loss, picked per batch by the measured code density: at
initialisation about half the codes are active and dense matmuls are the fastest; once the
penalty has made the codes sparse (L0 of tens out of thousands) the decode, the decoder's
gradient and the encoder's backward only touch the active codes (`kernels`), which leaves the
encoder's forward matmul as the one B×d×F product of the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monosemantic.sae.base import SAE, BatchGroup, SAEOutput, TrainCodes, check_non_negative
from monosemantic.sae.kernels import SparseCodes

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig

SPARSE_MAX_DENSITY = 0.07
"""Largest fraction of active codes for which the sparse path runs (CPU only): measured on CPU
at d = 640, B = 4096, F = 4096 the sparse forward + backward broke even with the dense one
near 9% active (3.6× faster at 0.5%, 2.7× at 2%, 1.6× at 5%)."""


class ReluSAE(SAE):
    """ReLU SAE with the decoder-norm-weighted L1 penalty."""

    sparsity_coefficient_field = "l1_coefficient"
    supports_cross_layer = True
    default_b_dec_init = "mean"

    @classmethod
    def default_lr(cls, cfg: SAEConfig) -> float:
        """5e-5, the paper's."""
        return 5e-5

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        check_non_negative(cfg, "l1_coefficient")

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        # Whether the last automatic choice found sparse codes: the next forward then computes
        # its codes without a graph first (a hint only; both paths give the same result).
        self._last_sparse = False

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_acts(x_BD))

    def _encode_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        return torch.relu(self.pre_acts_slice(x_BD, lo, hi))

    @staticmethod
    def is_sparse(f_BF: torch.Tensor) -> bool:
        """Whether at most `SPARSE_MAX_DENSITY` of the codes are active (one host read)."""
        return int(torch.count_nonzero(f_BF)) <= SPARSE_MAX_DENSITY * f_BF.numel()

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, sparse: bool | None = None,
                group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None) -> SAEOutput:
        """Loss and codes; `sparse` forces a path (2-D x), None picks by density on CPU.
        `group` needs nothing here: both terms are means of per-row terms. A feature shard
        (`keep_features_`) sums its partial decode and L1 with the others'; the shards may
        pick different paths (both make the same collectives).

        The automatic choice runs on CPU only: counting the active codes reads a number back
        from the device, which a GPU step must not wait for (and GPU matmuls are cheap)."""
        y_BD = self.target_of(x_BD, target_BD)
        auto = sparse is None and x_BD.device.type == "cpu" and x_BD.dim() == 2
        if sparse or (auto and self._last_sparse):
            f_BF = self.selection_pre_acts(x_BD).relu_()
            if sparse or self.is_sparse(f_BF):
                return self._sparse_forward(x_BD, y_BD, f_BF, l1_scale)
            self._last_sparse = False
        # In place: addmm's backward does not need its output, so ReLU can overwrite it.
        f_BF = torch.relu_(self.pre_acts(x_BD))
        if auto and self.is_sparse(f_BF.detach()):
            self._last_sparse = True
            return self._sparse_forward(x_BD, y_BD, f_BF.detach(), l1_scale)
        x_hat_BD = self.add_skip(self.decode(f_BF), x_BD)
        # Σ_b Σ_i f_bi‖W_dec[i]‖ as one column sum and a dot: no B×F temporary.
        f_sum_F = f_BF.reshape(-1, f_BF.shape[-1]).sum(0, dtype=torch.float32)
        l1 = torch.dot(f_sum_F, self.penalty_norms_F().float())
        return self._output(y_BD, x_hat_BD, l1, l1_scale, f_BF=f_BF)

    def _sparse_forward(self, x_BD: torch.Tensor, y_BD: torch.Tensor, f_BF: torch.Tensor,
                        l1_scale: float) -> SAEOutput:
        """The same loss from the active codes of `f_BF` (no grad; it only picks them)."""
        codes = self.codes_where(x_BD, f_BF, f_BF)
        x_hat_BD = self.add_skip(self._sum_shards(codes.decode(self.W_dec)) + self.b_dec, x_BD)
        dec_norm_F = self.penalty_norms_F().float()
        l1 = torch.dot(codes.vals_N.float(), dec_norm_F[codes.idx_N])
        return self._output(y_BD, x_hat_BD, l1, l1_scale, codes=codes)

    def _output(self, y_BD: torch.Tensor, x_hat_BD: torch.Tensor, l1_sum: torch.Tensor,
                l1_scale: float, f_BF: torch.Tensor | None = None,
                codes: SparseCodes | None = None) -> SAEOutput:
        """Loss terms against the target `y_BD` (the input itself for an SAE)."""
        mse = self.mse(y_BD, x_hat_BD)
        # Sharded: both paths sum x̂ first, then this (the same collectives on every shard).
        sparsity = self._penalty(l1_sum, l1_scale, y_BD.numel() // y_BD.shape[-1])
        return SAEOutput(x_hat_BD, f_BF, {"mse": mse, "l1": sparsity}, mse + sparsity, codes)

    def _penalty(self, l1_sum: torch.Tensor, l1_scale: float, n_rows: int) -> torch.Tensor:
        """λ·l1_scale·Σ_b Σ_i f_bi‖W_dec[i]‖ / B from the sum (summed over shards first)."""
        return self.cfg.l1_coefficient * l1_scale * self._sum_shards(l1_sum) / n_rows

    def train_codes(self, x_BD: torch.Tensor, l1_scale: float = 1.0,
                    group: BatchGroup | None = None) -> TrainCodes:
        """`forward`'s codes and L1 penalty (weighted by this module's decoder row norms):
        listed when sparse (CPU, as `forward` picks), else dense."""
        n_rows = x_BD.numel() // x_BD.shape[-1]
        f_BF = torch.relu_(self.pre_acts(x_BD))
        norms_F = self.W_dec.norm(dim=1).float()
        if x_BD.device.type == "cpu" and x_BD.dim() == 2 and self.is_sparse(f_BF.detach()):
            codes = self.codes_where(x_BD, f_BF.detach(), f_BF.detach())
            l1 = torch.dot(codes.vals_N.float(), norms_F[codes.idx_N])
            return TrainCodes(codes, None, f_BF.detach(),
                              {"l1": self._penalty(l1, l1_scale, n_rows)})
        f_sum_F = f_BF.reshape(-1, f_BF.shape[-1]).sum(0, dtype=torch.float32)
        l1 = torch.dot(f_sum_F, norms_F)
        return TrainCodes(None, f_BF, f_BF.detach(), {"l1": self._penalty(l1, l1_scale, n_rows)})
