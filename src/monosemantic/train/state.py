"""Everything a run carries between steps, and its checkpoint round trip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import to_dict
from monosemantic.errors import UserError
from monosemantic.sae import SAE, create_sae
from monosemantic.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from monosemantic.train.config import TrainConfig
from monosemantic.train.dead import FeatureTracker, ShardedTracker
from monosemantic.train.metrics import LossSums, ReconstructionSums

if TYPE_CHECKING:
    from monosemantic.sae.sharded import FeatureGroup
    from monosemantic.train.data import TrainData

CHECKPOINT_VERSION = 1


@dataclass
class TrainState:
    """SAE, optimizer, counters and metric accumulators of one run."""

    cfg: TrainConfig
    sae: SAE
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

    @classmethod
    def create(cls, cfg: TrainConfig, d_in: int, device: torch.device,
               shard: FeatureGroup | None = None) -> TrainState:
        """A fresh SAE (`cfg.sae` on activations of width `d_in`, seeded by `cfg.seed`) with its
        Adam optimizer, on `device`; with `shard`, only the shard's features of the same init."""
        torch.manual_seed(cfg.seed)
        # A copy: the SAE keeps its config, which must not change with `cfg`.
        sae = create_sae(dataclasses.replace(cfg.sae, d_in=d_in), shard).to(device)
        sae.train()
        assert cfg.lr is not None and cfg.dead_window_tokens is not None
        beta1, beta2 = cfg.adam_betas  # validate() checked there are two
        optimizer = torch.optim.Adam(
            sae.parameters(), lr=cfg.lr, betas=(beta1, beta2), weight_decay=0.0,
            # The fused CUDA kernel updates all parameters in one launch.
            fused=device.type == "cuda")
        tracker = (FeatureTracker(cfg.sae.n_features, cfg.dead_window_tokens, device)
                   if shard is None else ShardedTracker(shard, cfg.dead_window_tokens, device))
        return cls(cfg=cfg, sae=sae, optimizer=optimizer, tracker=tracker,
                   recon=ReconstructionSums(d_in, device), losses=LossSums(device), device=device)

    def save(self, run_dir: Path, keep: int, wall_time: float,
             norm_scale: float) -> tuple[int, Path]:
        """Write a checkpoint for the current step; returns (step, path)."""
        state = {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "cfg": to_dict(self.cfg),
            "sae_cfg": to_dict(self.sae.cfg),
            "sae": {k: v.detach().cpu() for k, v in self.sae.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "tracker": self.tracker.state_dict(),
            "recon": self.recon.state_dict(),
            "losses": self.losses.state_dict(),
            "rng": rng_state(self.device),
            "wall_time": wall_time,
            "norm_scale": norm_scale,
            "last_records": self.last_records,
        }
        return self.step, save_checkpoint(run_dir, self.step, state, keep)

    def load(self, path: Path, d_in: int) -> None:
        """Restore a checkpoint written by `save`, checking that it fits the data."""
        state = load_checkpoint(path)
        saved_d = int(state["sae_cfg"]["d_in"])
        if saved_d != d_in:
            raise UserError(
                f"checkpoint {path} is for activations of width {saved_d}, but the data has "
                f"width {d_in}: use the store/hook the run started with, or a new output directory")
        if state.get("version") != CHECKPOINT_VERSION:
            raise UserError(f"checkpoint {path} has format version {state.get('version')}, this "
                            f"trainer reads {CHECKPOINT_VERSION}: start a new run directory")
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tracker.load_state_dict(state["tracker"])
        self.recon.load_state_dict(state["recon"])
        self.losses.load_state_dict(state["losses"])
        set_rng_state(state["rng"], self.device)
        self.step = int(state["step"])
        self.wall_time = float(state["wall_time"])
        self.last_records = dict(state.get("last_records", {}))

    def save_final_sae(self, out_dir: Path, data: TrainData, summary: dict[str, Any]) -> None:
        """Save the SAE (normalization folded in) with the run's metadata beside it."""
        from monosemantic.sae import save_sae

        meta = dict(data.metadata())
        meta["training"] = summary
        meta["train_config"] = to_dict(self.cfg)
        save_sae(self.sae, out_dir, extra_metadata=meta, norm_scale=float(data.norm_scale))
