"""TrainStates holding a slice of the features, as feature-parallel ranks will, checkpointed.

    snapshot_worker.py SAVE_RUN CHECKPOINT   (under torchrun)
Rank r of N loads CHECKPOINT (a whole state saved by one process) into a state of its features
[r·F//N, (r+1)·F//N) (`TrainState.features`), checks it against its cut of the whole state and
saves it as a checkpoint of SAVE_RUN, which one process then reads back whole.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from monosemantic.distributed import process_group
from monosemantic.sae import SAEConfig
from monosemantic.train.config import TrainConfig, resolve
from monosemantic.train.dcp import FeatureSlice
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import Loop

CPU = torch.device("cpu")


def config(run: Path) -> TrainConfig:
    sae = SAEConfig(architecture="topk", n_features=12, k=2, aux_k=4)
    return resolve(TrainConfig(out=run, store=Path("store"), sae=sae, steps=20, batch_size=8,
                               log_every=1000, dead_window_tokens=16, device="cpu"), None, 4)


def trained_state(run: Path) -> TrainState:
    """The whole state after 4 steps on a fixed batch."""
    cfg = config(run)
    state = TrainState.create(cfg, d_in=4, device=CPU)
    x_BD = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    state.sae.init_from_data(x_BD)
    loop = Loop(cfg, data=None, state=state, device=CPU)
    for _ in range(4):
        loop.step(x_BD)
    return state


def sliced_state(run: Path, part: FeatureSlice) -> TrainState:
    """An empty state of the features `part` holds (the whole run's config)."""
    cfg = config(run)
    narrow = dataclasses.replace(cfg, sae=dataclasses.replace(cfg.sae, n_features=part.size))
    state = TrainState.create(narrow, d_in=4, device=CPU)
    state.cfg, state.features = cfg, part
    return state


def cut(whole: TrainState, part: FeatureSlice) -> dict[str, torch.Tensor]:
    """`whole`'s values as the rank holding `part` has them, by entry name."""
    dims = whole.sae.feature_dims
    out = {}
    for name, value in whole.sae.state_dict().items():
        out[f"sae/{name}"] = value.narrow(dims[name], part.lo, part.size) \
            if name in dims else value
    for name, param in whole.sae.named_parameters():
        for key, value in whole.optimizer.state[param].items():
            sharded = name in dims and value.shape == param.shape
            out[f"optim/{name}/{key}"] = value.narrow(dims[name], part.lo, part.size) \
                if sharded else value
    for name in ("tokens_since_fire_F", "fires_in_window_F"):
        out[f"tracker/{name}"] = getattr(whole.tracker, name)[part.lo:part.hi]
    return out


def values(state: TrainState) -> dict[str, torch.Tensor]:
    """`state`'s values by entry name (the keys `cut` gives)."""
    out = {f"sae/{k}": v for k, v in state.sae.state_dict().items()}
    for name, param in state.sae.named_parameters():
        for key, value in state.optimizer.state[param].items():
            out[f"optim/{name}/{key}"] = value
    for name in ("tokens_since_fire_F", "fires_in_window_F"):
        out[f"tracker/{name}"] = getattr(state.tracker, name)
    return out


def main(save_run: Path, checkpoint: Path) -> None:
    with process_group(CPU) as (ranks, _):
        part = FeatureSlice.of_rank(ranks.rank, ranks.world, 12)
        whole = TrainState.create(config(save_run), d_in=4, device=CPU)
        whole.load(checkpoint, ranks)
        mine = sliced_state(save_run, part)
        mine.load(checkpoint, ranks)
        expected, got = cut(whole, part), values(mine)
        if sorted(got) != sorted(expected):
            raise SystemExit(f"rank {ranks.rank}: entries {sorted(got)}")
        for name, value in expected.items():
            if not torch.equal(got[name], value):
                raise SystemExit(f"rank {ranks.rank}: wrong {name} for {part}")
        mine.save(save_run, keep=2, wall_time=1.0, norm_scale=0.5, ranks=ranks)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
