"""`relu`: the Scaling Monosemanticity recipe (Anthropic, April 2024 training update).

Inputs are scaled by one scalar so E‖x‖² = d (the trainer does this; `save_sae` folds the scale
in). `f = ReLU(W_enc·x + b_enc)`, `x̂ = b_dec + f·W_dec`,
loss = ‖x − x̂‖² + λ·l1_scale·Σ_i f_i‖W_dec[i]‖₂ (sum over d and F, mean over the batch).
Decoder norms are free during training; the penalty weighs each code by its row norm.
"""

from __future__ import annotations

import torch

from monosemantic.sae.base import SAE, SAEOutput


class ReluSAE(SAE):
    """ReLU SAE with the decoder-norm-weighted L1 penalty."""

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_acts(x_BD))

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0) -> SAEOutput:
        f_BF = self.encode(x_BD)
        x_hat_BD = self.decode(f_BF)
        mse = self.mse(x_BD, x_hat_BD)
        dec_norm_F = self.W_dec.norm(dim=1)
        l1 = (f_BF.float() * dec_norm_F).sum(dim=-1).mean()
        sparsity = self.cfg.l1_coefficient * l1_scale * l1
        losses = {"mse": mse, "l1": sparsity}
        return SAEOutput(x_hat_BD=x_hat_BD, f_BF=f_BF, losses=losses, loss=mse + sparsity)
