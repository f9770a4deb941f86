"""`topk` (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

`z = W_enc·(x − b_dec) + b_enc`; keep the k largest entries of z per row, ReLU them, zero the
rest; `x̂ = b_dec + f·W_dec` decoded from the k active rows only. Decoder rows stay unit norm
(the base class's optimizer-step hooks). `b_dec` starts at the geometric median of the data.

AuxK (Gao et al., appendix A.2), with e = x − x̂ (detached) and ê = Σ over the top k_aux *dead*
latents of ReLU(z_i)·W_dec[i] (no bias):

    aux = aux_coefficient · Σ_b‖e_b − ê_b‖² / Σ_b‖e_b − ē‖² · (1/B)Σ_b‖x_b − x̄‖²

i.e. the paper's normalised MSE of the residual reconstruction (normalised by the residual's
variance about its batch mean), multiplied by the batch's total variance E‖x − x̄‖² (a constant,
no gradient). The paper's main loss is the MSE normalised by that same variance, so this keeps
exactly the paper's ratio between the two terms while our main term stays ‖x − x̂‖².
k_aux = min(aux_k, number of dead latents). A transcoder uses its target y in place of x
(e = y − ŷ, the variance E‖y − ȳ‖²).

Data-parallel (a `BatchGroup` of processes, each with an equal slice of the batch): the two
variances and ē are the global batch's (reduced over the group), and each process's term is
scaled by the group size so that the mean over the processes is the global term.

Feature-sharded (`keep_features_`): every shard sees the whole batch, so e, ē and the variances
are the same on all of them; the top k (and AuxK's dead top k_aux) are chosen over the whole
dictionary (`sharded.row_topk_in_shard`) and the partial decodes summed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import ConfigError
from monosemantic.sae.base import SAE, BatchGroup, SAEOutput, TrainCodes, check_non_negative
from monosemantic.sae.bias_init import geometric_median  # noqa: F401 (its former home)
from monosemantic.sae.kernels import SparseCodes, scatter_codes
from monosemantic.sae.sharded import row_topk_in_shard

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig

TOPK_CHUNK_FLOATS = 1 << 26
"""`encode_sparse` and `encode_slice` compute full pre-activations for this many floats' worth
of rows at a time (256 MiB in float32; at least 64 rows, below which MKL's GEMM can round
differently)."""


class TopKSAE(SAE):
    """TopK SAE with unit-norm decoder rows and the AuxK loss."""

    default_apply_b_dec_to_input = True
    default_b_dec_init = "median"
    unit_norm_decoder = True
    uses_k = True
    needs_dead_mask = True
    saelens_architecture = "topk"
    supports_cross_layer = True

    @classmethod
    def default_lr(cls, cfg: SAEConfig) -> float:
        """Gao et al. (2024): 2e-4 at 2^14 latents, scaled as 1/sqrt(n_features)."""
        return 2e-4 / math.sqrt(cfg.n_features / 2**14)

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        if cfg.k < 1 or cfg.k > cfg.n_features:
            raise ConfigError(f"k = {cfg.k} must be between 1 and n_features = "
                              f"{cfg.n_features}: lower k or raise n_features")
        if cfg.aux_k < 0:
            raise ConfigError(f"aux_k must be >= 0 (0 = d_in // 2), got {cfg.aux_k}")
        check_non_negative(cfg, "aux_coefficient")

    @classmethod
    def saelens_fields(cls, cfg: SAEConfig) -> dict[str, Any]:
        return {"k": cfg.k, "rescale_acts_by_decoder_norm": False}

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        vals_BK, idx_BK = torch.topk(self.pre_acts(x_BD), self.cfg.k, dim=-1, sorted=False)
        return scatter_codes(idx_BK, torch.relu(vals_BK), self.cfg.n_features)

    def _encode_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        return self._encode_sparse(x_BD, lo, hi).dense()

    def _encode_sparse(self, x_BD: torch.Tensor, lo: int, hi: int) -> SparseCodes:
        """The picks in [lo, hi) with a value > 0, from each row's top k. That needs all F
        pre-activations of a row: they are computed for a chunk of rows at a time (never the
        dense [B, F] for a large dictionary), and no dense codes are built."""
        n_rows, k = x_BD.shape[0], self.cfg.k
        # A batch that fits is one chunk: exactly `encode`'s computation.
        chunk = max(64, TOPK_CHUNK_FLOATS // self.cfg.n_features)
        rows, idxs, vals = [], [], []
        for first in range(0, max(n_rows, 1), chunk):  # an empty batch: one empty chunk
            z_CK, idx_CK = torch.topk(self.pre_acts(x_BD[first:first + chunk]), k, dim=-1,
                                      sorted=False)
            idx_CK, order_CK = idx_CK.sort(dim=1)  # features ascending within a row
            z_CK = z_CK.gather(1, order_CK)
            # z > 0 is ReLU(z) != 0: `encode`'s zero codes are left out.
            keep_N = ((z_CK > 0) & (idx_CK >= lo) & (idx_CK < hi)).reshape(-1)
            flat_N = keep_N.nonzero().squeeze(1)
            rows.append(flat_N // k + first)
            idxs.append(idx_CK.reshape(-1)[flat_N] - lo)
            vals.append(z_CK.reshape(-1)[flat_N])
        return SparseCodes(torch.cat(rows), torch.cat(idxs), torch.cat(vals), n_rows, hi - lo)

    def _pick_topk(self, x_BD: torch.Tensor, z_BF: torch.Tensor, k: int) -> SparseCodes:
        """ReLU of the k largest entries of each row of z (z without grad; see `codes_where`).
        Sharded: the k largest of the whole dictionary's row, of which this shard keeps its own."""
        n_rows, n_feat = z_BF.shape
        if self.shard is not None:
            row_N, idx_N, z_N = row_topk_in_shard(z_BF, k, self.shard)
        else:
            z_BK, idx_BK = torch.topk(z_BF, k, dim=-1, sorted=False)
            row_N = torch.arange(n_rows, device=z_BF.device).repeat_interleave(k)
            idx_N, z_N = idx_BK.reshape(-1), z_BK.reshape(-1)
        z_N = self.picked_pre_acts(x_BD, z_N, row_N, idx_N)
        return SparseCodes(row_N, idx_N, torch.relu(z_N), n_rows, n_feat)

    def _train_codes(self, x_BD: torch.Tensor, z_BF: torch.Tensor,
                     group: BatchGroup | None = None) -> SparseCodes:
        """The codes the training loss uses (z without grad); per row, so `group` is unused."""
        return self._pick_topk(x_BD, z_BF, self.cfg.k)

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None) -> SAEOutput:
        y_BD = self.target_of(x_BD, target_BD)
        # z only selects; gradients reach the encoder through the picked entries alone.
        z_BF = self.selection_pre_acts(x_BD)
        codes = self._train_codes(x_BD, z_BF, group)
        x_hat_BD = self.add_skip(self._sum_shards(codes.decode(self.W_dec)) + self.b_dec, x_BD)
        mse = self.mse(y_BD, x_hat_BD)
        if dead_mask_F is None:
            aux = mse.new_zeros(())
        else:
            aux = self.auxk_loss(x_BD, x_hat_BD, z_BF, dead_mask_F, group, y_BD)
        return SAEOutput(x_hat_BD=x_hat_BD, f_BF=None, codes=codes, losses={"mse": mse, "aux": aux},
                         loss=mse + aux)

    def train_codes(self, x_BD: torch.Tensor, l1_scale: float = 1.0,
                    group: BatchGroup | None = None) -> TrainCodes:
        """`forward`'s codes (no penalty); `z_BF` is only valid until this module's next
        `selection_pre_acts` (a reused buffer on CPU)."""
        z_BF = self.selection_pre_acts(x_BD)
        return TrainCodes(self._train_codes(x_BD, z_BF, group), None, z_BF, {})

    def aux_loss(self, x_BD: torch.Tensor, y_hat_BD: torch.Tensor, codes: TrainCodes,
                 dead_mask_F: torch.Tensor, target_BD: torch.Tensor,
                 group: BatchGroup | None = None) -> dict[str, torch.Tensor]:
        """AuxK on the residual `target_BD − y_hat_BD` of a prediction decoded elsewhere."""
        return {"aux": self.auxk_loss(x_BD, y_hat_BD, codes.z_BF, dead_mask_F, group,
                                      target_BD)}

    def auxk_loss(self, x_BD: torch.Tensor, x_hat_BD: torch.Tensor, z_BF: torch.Tensor,
                  dead_mask_F: torch.Tensor, group: BatchGroup | None = None,
                  target_BD: torch.Tensor | None = None) -> torch.Tensor:
        """AuxK loss (formula in the module docstring); 0 when no latent is dead.

        `z_BF` are the pre-activations without grad; the picked dead latents get their gradient
        through the sampled encoder. `dead_mask_F` must be the same on every process of
        `group`. A transcoder's residual and variances are its target's (`target_BD`)."""
        y_BD = x_BD if target_BD is None else target_BD
        # A host read: free on CPU; on a GPU one sync per step once the trainer passes the mask
        # (only while some feature may be dead).
        n_dead_ = dead_mask_F.sum()
        # Sharded: the mask is this shard's; the dead top-k_aux is chosen over all shards.
        n_dead = int(n_dead_ if self.shard is None else self.shard.sum_(n_dead_))
        if n_dead == 0:
            return x_hat_BD.new_zeros((), dtype=torch.float32)
        k_aux = min(self.cfg.resolved_aux_k, n_dead)
        z_dead_BF = z_BF.detach().masked_fill(~dead_mask_F.to(torch.bool), float("-inf"))
        e_hat_BD = self._sum_shards(
            self._pick_topk(x_BD, z_dead_BF, k_aux).decode(self.W_dec)).float()
        e_BD = (y_BD.float() - x_hat_BD.float()).detach()
        with torch.no_grad():
            if group is None:
                e_var = (e_BD - e_BD.mean(0)).pow(2).sum().clamp_min(1e-12)
                y_f = y_BD.float()
                x_var_per_row = (y_f - y_f.mean(0)).pow(2).sum() / y_BD.shape[0]
            else:
                e_var = _global_centered_sq(e_BD, group).clamp_min(1e-12)
                x_var_per_row = (_global_centered_sq(y_BD.float(), group)
                                 / (y_BD.shape[0] * group.world))
        nmse = (e_hat_BD - e_BD).pow(2).sum() / e_var
        if group is not None:
            nmse = nmse * group.world
        return self.cfg.aux_coefficient * nmse * x_var_per_row


def _global_centered_sq(t_BD: torch.Tensor, group: BatchGroup) -> torch.Tensor:
    """Σ_b‖t_b − t̄‖² over the group's global batch (t̄ its global mean), on every process."""
    n_rows = t_BD.shape[0] * group.world
    mean_D = group.sum_(t_BD.sum(0)) / n_rows
    return group.sum_((t_BD - mean_D).pow(2).sum())
