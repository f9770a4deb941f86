"""`matryoshka` (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka SAEs"):
batchtopk codes whose dictionary is trained as nested prefixes.

The features are split into nested prefixes of sizes m_1 < ... < m_G = F
(`SAEConfig.resolved_matryoshka_prefixes`). Codes are picked exactly as batchtopk picks them
(the k·B largest ReLU(z) of the batch over the whole dictionary; the same running inference
threshold, saved for SAELens as a "jumprelu"), and every prefix must reconstruct on its own:

    loss = (1/G) Σ_g ‖x − (b_dec + Σ_{i < m_g} f_i·W_dec[i])‖²  + AuxK (as batchtopk's)

The mean over prefixes, not the sum, keeps the reconstruction term on the scale of one MSE: the
AuxK coefficient, the learning rate and the logged losses then mean what they mean for
batchtopk, whatever G. The logged `mse` is the
full dictionary's (comparable with the other architectures), `prefix_mse` the mean above.

The nested reconstructions cost one decode in all: each code is decoded once into its group's
partial sum (group g = features [m_{g-1}, m_g)) and the partials are summed cumulatively.

Feature-parallel training is refused (`supports_feature_parallel`): the prefixes cross the
shards, and their partial decodes would each need a sum over them (not built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monosemantic.config import ConfigError
from monosemantic.sae.base import BatchGroup, SAEOutput
from monosemantic.sae.batchtopk import BatchTopKSAE
from monosemantic.sae.kernels import SparseCodes

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig


class MatryoshkaSAE(BatchTopKSAE):
    """Matryoshka BatchTopK SAE: batchtopk codes, each nested prefix trained to reconstruct."""

    # Its loss is made of nested prefix reconstructions, which a cross-layer transcoder's joint
    # decode over layers would have to repeat per prefix (not built).
    supports_cross_layer = False

    supports_feature_parallel = False

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        prefixes = tuple(cfg.matryoshka_prefixes)
        if not prefixes:
            return
        if not all(isinstance(m, int) and m >= 1 for m in prefixes):
            raise ConfigError(f"matryoshka_prefixes must be positive integers, got {prefixes}")
        if any(b <= a for a, b in zip(prefixes, prefixes[1:])):
            raise ConfigError(f"matryoshka_prefixes must be strictly increasing, got {prefixes}")
        if prefixes[-1] != cfg.n_features:
            raise ConfigError(f"the last of matryoshka_prefixes must be n_features = "
                              f"{cfg.n_features} (the whole dictionary), got {prefixes}: "
                              f"end the list with {cfg.n_features}")

    def prefix_reconstructions(self, codes: SparseCodes) -> torch.Tensor:
        """x̂ of each nested prefix [G, B, d] (bias included; the last is the full x̂): every
        code decoded once into its group's partial sum, then the partials summed cumulatively."""
        ends = self.cfg.resolved_matryoshka_prefixes
        bounds_G = torch.tensor(ends, device=codes.idx_N.device)
        # right=True: features [m_{g-1}, m_g) fall in group g.
        group_N = torch.bucketize(codes.idx_N, bounds_G, right=True)
        partials = []
        for g in range(len(ends)):
            keep_N = group_N == g  # rows stay ascending, as the ragged decode needs
            part = SparseCodes(codes.row_N[keep_N], codes.idx_N[keep_N], codes.vals_N[keep_N],
                               codes.n_rows, codes.n_features)
            partials.append(part.decode(self.W_dec))
        return torch.stack(partials).cumsum(0) + self.b_dec

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None) -> SAEOutput:
        if self.shard is not None:
            raise ValueError("matryoshka does not train feature-sharded (see module docstring)")
        y_BD = self.target_of(x_BD, target_BD)
        z_BF = self.selection_pre_acts(x_BD)
        codes = self._train_codes(x_BD, z_BF, group)
        # A transcoder's skip term is part of every prefix's output.
        x_hat_GBD = self.add_skip(self.prefix_reconstructions(codes), x_BD)
        x_hat_BD = x_hat_GBD[-1]
        prefix_mse = (y_BD.float() - x_hat_GBD.float()).pow(2).sum(dim=-1).mean()
        if dead_mask_F is None:
            aux = prefix_mse.new_zeros(())
        else:
            aux = self.auxk_loss(x_BD, x_hat_BD, z_BF, dead_mask_F, group, y_BD)
        losses = {"mse": self.mse(y_BD, x_hat_BD).detach(), "prefix_mse": prefix_mse, "aux": aux}
        return SAEOutput(x_hat_BD=x_hat_BD, f_BF=None, codes=codes, losses=losses,
                         loss=prefix_mse + aux)
