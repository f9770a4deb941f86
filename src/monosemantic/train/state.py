"""Everything a run carries between steps, and its checkpoint round trip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import to_dict
from monosemantic.distributed import Ranks
from monosemantic.sae import SAE, create_sae
from monosemantic.sae.clt import CrossLayerTranscoder, parse_layers
from monosemantic.sae.clt_io import save_clt
from monosemantic.train.config import TrainConfig
from monosemantic.train.dcp import FeatureSlice
from monosemantic.train.dead import FeatureTracker, ShardedTracker
from monosemantic.train.metrics import LossSums, ReconstructionSums
from monosemantic.train.snapshot import load_snapshot, save_snapshot

if TYPE_CHECKING:
    from monosemantic.sae.sharded import FeatureGroup
    from monosemantic.train.data import TrainData


@dataclass
class TrainState:
    """SAE, optimizer, counters and metric accumulators of one run."""

    cfg: TrainConfig
    sae: SAE | CrossLayerTranscoder
    optimizer: torch.optim.Optimizer
    tracker: FeatureTracker
    recon: ReconstructionSums
    losses: LossSums
    device: torch.device
    step: int = 0
    """Optimizer steps taken = batches consumed (the reader position)."""
    wall_time: float = 0.0
    """Seconds spent by the run before the current process (summed over resumes)."""
    last_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The latest train and eval log records (the final SAE's summary)."""
    features: FeatureSlice | None = None
    """The features this rank holds of every per-feature tensor (`SAE.feature_dims`); None:
    all of them (one process, or data-parallel ranks). Checkpoints are sharded by it."""

    @classmethod
    def create(cls, cfg: TrainConfig, d_in: int, device: torch.device,
               shard: FeatureGroup | None = None) -> TrainState:
        """A fresh SAE (`cfg.sae` on activations of width `d_in`, seeded by `cfg.seed`) with its
        Adam optimizer, on `device`; with `shard`, only the shard's features of the same init."""
        torch.manual_seed(cfg.seed)
        # A copy: the SAE keeps its config, which must not change with `cfg`.
        sae_cfg = dataclasses.replace(cfg.sae, d_in=d_in)
        n_tracked, features = cfg.sae.n_features, None
        if cfg.clt_layers is not None:  # a CLT: F features per layer, never sharded
            sae: SAE | CrossLayerTranscoder = CrossLayerTranscoder(
                sae_cfg, parse_layers(cfg.clt_layers)).to(device)
            n_tracked = sae.n_features_total
            features = FeatureSlice.whole(n_tracked)  # checkpoints: the n·F counters
        else:
            sae = create_sae(sae_cfg, shard).to(device)
        sae.train()
        assert cfg.lr is not None and cfg.dead_window_tokens is not None
        beta1, beta2 = cfg.adam_betas  # validate() checked there are two
        optimizer = torch.optim.Adam(
            sae.parameters(), lr=cfg.lr, betas=(beta1, beta2), weight_decay=0.0,
            # The fused CUDA kernel updates all parameters in one launch.
            fused=device.type == "cuda")
        tracker = (FeatureTracker(n_tracked, cfg.dead_window_tokens, device)
                   if shard is None else ShardedTracker(shard, cfg.dead_window_tokens, device))
        if shard is not None:
            features = FeatureSlice(shard.lo, shard.hi, shard.n_features)
        return cls(cfg=cfg, sae=sae, optimizer=optimizer, tracker=tracker,
                   recon=ReconstructionSums(int(sae.b_dec.shape[0]), device),
                   losses=LossSums(device), device=device,
                   features=features)

    def save(self, run_dir: Path, keep: int, wall_time: float, norm_scale: float,
             ranks: Ranks | None = None) -> tuple[int, Path]:
        """Write a checkpoint for the current step (every rank calls it); returns (step, path)."""
        path = save_snapshot(self, run_dir, keep, wall_time, norm_scale, ranks or Ranks())
        return self.step, path

    def load(self, path: Path, ranks: Ranks | None = None) -> None:
        """Restore this rank's part of the checkpoint folder `path` (every rank calls it);
        `snapshot.check_snapshot` vets the checkpoint first."""
        load_snapshot(self, path, ranks or Ranks())

    def save_final_sae(self, out_dir: Path, data: TrainData, summary: dict[str, Any]) -> None:
        """Save the SAE (normalization folded in) with the run's metadata beside it."""
        from monosemantic.sae import save_sae

        meta = dict(data.metadata())
        meta["training"] = summary
        meta["train_config"] = to_dict(self.cfg)
        if isinstance(self.sae, SAE) and self.sae.cfg.is_crosscoder:  # own folder format
            from monosemantic.sae.crosscoder import Site, save_crosscoder

            save_crosscoder(self.sae, out_dir, [Site(**s) for s in meta["sites"]], meta)
            return
        if isinstance(self.sae, CrossLayerTranscoder):
            save_clt(self.sae, out_dir, meta, meta["norm_scales"], meta["target_norm_scales"])
            return
        target_scale = meta.get("target_norm_scale")  # a transcoder's (train/paired.py)
        save_sae(self.sae, out_dir, extra_metadata=meta, norm_scale=float(data.norm_scale),
                 target_norm_scale=None if target_scale is None else float(target_scale))
