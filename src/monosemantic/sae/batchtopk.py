"""`batchtopk` (Bussmann et al. 2024): top k·B activations over the whole batch in training.

Training keeps the k·B largest ReLU(z) values of the batch (so rows get a variable number of
features, k on average). Inference cannot depend on the batch, so each training step updates a
running mean of the smallest kept positive activation (the first step sets it; then rate
`batchtopk_threshold_rate`), and `encode` keeps `z_i > threshold_i` (a JumpReLU; saved for
SAELens as architecture "jumprelu"). The threshold is a per-feature buffer (all entries equal
while training) so that folding decoder norms at save time stays exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import ConfigError
from monosemantic.sae.base import SAE, BatchGroup
from monosemantic.sae.kernels import SparseCodes
from monosemantic.sae.sharded import BothAxes, FeatureGroup
from monosemantic.sae.topk import TopKSAE

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig


class BatchTopKSAE(TopKSAE):
    """BatchTopK SAE: batch-level top-k in training, a threshold at inference; AuxK as topk."""

    threshold: torch.Tensor
    threshold_count: torch.Tensor

    # Saved with its threshold as a JumpReLU, as SAELens itself does.
    saelens_architecture = "jumprelu"
    feature_dims = {**TopKSAE.feature_dims, "threshold": 0}

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        if not 0 < cfg.batchtopk_threshold_rate <= 1:
            raise ConfigError("batchtopk_threshold_rate must be in (0, 1], got "
                              f"{cfg.batchtopk_threshold_rate}")

    @classmethod
    def saelens_fields(cls, cfg: SAEConfig) -> dict[str, Any]:
        return {}

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.n_features, dtype=torch.float32))
        self.register_buffer("threshold_count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def reset_buffers(self) -> None:
        self.threshold.zero_()
        self.threshold_count.zero_()

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Threshold codes; before any training step (no threshold yet) the batch top-k codes."""
        z_BF = self.pre_acts(x_BD)
        if int(self.threshold_count) == 0:
            n_keep = min(self.cfg.k * z_BF.shape[0], z_BF.numel())
            vals_N, flat_N = torch.topk(torch.relu(z_BF).flatten(), n_keep, sorted=False)
            return torch.zeros_like(z_BF).flatten().scatter(0, flat_N, vals_N).view_as(z_BF)
        return torch.relu(z_BF) * self._keep(z_BF).to(z_BF.dtype)

    @property
    def rows_independent(self) -> bool:
        """Only with a threshold: before it the batch's top k·B picks the codes."""
        return int(self.threshold_count) > 0

    def _encode_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """The threshold is elementwise: only the slice's encoder columns. Before any training
        step the batch top-k needs the whole batch's codes (the base class's full encode)."""
        if int(self.threshold_count) == 0:
            return super(TopKSAE, self)._encode_slice(x_BD, lo, hi)
        z_BS = self.pre_acts_slice(x_BD, lo, hi)
        return torch.relu(z_BS) * (z_BS.float() > self.threshold[lo:hi]).to(z_BS.dtype)

    # Its codes are elementwise (or the batch's top k·B): listed from the dense slice, not
    # from per-row top k picks as topk's.
    _encode_sparse = SAE._encode_sparse

    def _keep(self, z_BF: torch.Tensor) -> torch.Tensor:
        return z_BF.float() > self.threshold

    def _train_codes(self, x_BD: torch.Tensor, z_BF: torch.Tensor,
                     group: BatchGroup | None = None) -> SparseCodes:
        """Training: the k·B largest ReLU(z) of the batch; eval mode: the threshold codes.
        With `group`, B is the global batch (see `_group_codes`)."""
        if not self.training and int(self.threshold_count) > 0:
            return self.codes_where(x_BD, z_BF, self._keep(z_BF) & (z_BF > 0))
        if self.shard is not None:  # this shard's features (of this group's rows, if any)
            rows = z_BF.shape[0] * (group.world if group is not None else 1)
            n_keep = min(self.cfg.k * rows, rows * self.shard.n_features)
            pool = self.shard if group is None else BothAxes(self.shard, group)
            return self._group_codes(x_BD, z_BF, pool, n_keep, self.training)
        if group is not None and self.training:
            n_keep = min(self.cfg.k * z_BF.shape[0], z_BF.numel()) * group.world
            return self._group_codes(x_BD, z_BF, group, n_keep)
        n_rows, n_feat = z_BF.shape
        n_keep = min(self.cfg.k * n_rows, z_BF.numel())
        vals_N, flat_N = torch.topk(torch.relu(z_BF).flatten(), n_keep, sorted=False)
        # Sorting the flat indices groups codes by row, which the ragged decode needs.
        flat_N, order_N = torch.sort(flat_N)
        vals_N = vals_N[order_N]
        row_N, idx_N = flat_N // n_feat, flat_N % n_feat
        if self.training:
            self._update_threshold(vals_N)
        z_N = self.picked_pre_acts(x_BD, z_BF.reshape(-1)[flat_N], row_N, idx_N)
        return SparseCodes(row_N, idx_N, torch.relu(z_N), n_rows, n_feat)

    def _group_codes(self, x_BD: torch.Tensor, z_BF: torch.Tensor,
                     group: BatchGroup | FeatureGroup, n_keep: int,
                     update: bool = True) -> SparseCodes:
        """This process's share of the `n_keep` largest ReLU(z) of the global batch (a
        `BatchGroup`: z holds this process's rows) or of the whole dictionary (a
        `FeatureGroup`: z holds this process's features) (z without grad).

        Each process offers its own `n_keep` largest values (the global ones are among them);
        the `n_keep`-th largest of all offers is the cut, and the positive values >= the cut are
        kept. Zero codes change no loss, gradient or count, so only exact ties at a positive
        cut can differ from one process's pick of exactly `n_keep`: all tied values are kept.
        `update`: move the threshold (training)."""
        n_rows, n_feat = z_BF.shape
        vals_C, flat_C = torch.topk(torch.relu(z_BF).flatten(), min(n_keep, z_BF.numel()),
                                    sorted=False)
        with torch.no_grad():
            cut = torch.topk(group.gather_cat(vals_C.detach()), n_keep, sorted=False)[0].min()
        keep_C = (vals_C >= cut) & (vals_C > 0)
        flat_N = torch.sort(flat_C[keep_C])[0]
        row_N, idx_N = flat_N // n_feat, flat_N % n_feat
        z_N = z_BF.reshape(-1)[flat_N]
        if update:
            self._update_threshold(z_N, group)
        z_N = self.picked_pre_acts(x_BD, z_N, row_N, idx_N)
        return SparseCodes(row_N, idx_N, torch.relu(z_N), n_rows, n_feat)

    @torch.no_grad()
    def _update_threshold(self, vals_N: torch.Tensor,
                          group: BatchGroup | FeatureGroup | None = None) -> None:
        positive_N = vals_N[vals_N > 0]
        if group is not None:
            # The global smallest kept value (+inf on a process that kept none).
            smallest = (positive_N.min().float() if positive_N.numel()
                        else torch.full((), float("inf"), device=vals_N.device))
            smallest = group.min_(smallest.clone())
            if not bool(torch.isfinite(smallest)):
                return
            self._move_threshold(smallest)
            return
        if positive_N.numel() == 0:
            return
        smallest = positive_N.min().float()
        self._move_threshold(smallest)

    def _move_threshold(self, smallest: torch.Tensor) -> None:
        count = int(self.threshold_count)
        rate = 1.0 if count == 0 else self.cfg.batchtopk_threshold_rate
        self.threshold.mul_(1.0 - rate).add_(rate * smallest)
        self.threshold_count.add_(1)

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**super().inference_state(), "threshold": self.threshold.detach()}

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_inference_state(state)
        with torch.no_grad():
            self.threshold.copy_(state["threshold"])
            self.threshold_count.fill_(1)
