"""A feature-sharded state with known values, saved and loaded by `train.dcp` at any world size.

Run under torchrun (gloo) or as one process:
    shard_worker.py save DIR             each rank saves its slice of the state
    shard_worker.py load DIR N [OUT]     each rank loads its slice of DIR (saved by N ranks),
                                         checks it and the N per-rank objects, saves to OUT
Rank r of N holds the features [r·F//N, (r+1)·F//N) of every per-feature tensor (F = 10 does not
split evenly over 4 ranks); a wrong value exits nonzero. `expected_state` is the whole state.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from monosemantic.train.dcp import FeatureSlice, load_state, save_state

F, D = 10, 3
SHARDED = {"sae/W_enc": 1, "sae/b_enc": 0, "sae/W_dec": 0, "sae/threshold": 0,
           "optim/W_enc/exp_avg": 1, "optim/W_enc/exp_avg_sq": 1, "optim/W_dec/exp_avg": 0,
           "tracker/tokens_since_fire_F": 0}


def expected_state() -> dict[str, torch.Tensor]:
    """The whole state: every value a function of its global position."""
    return {
        "sae/W_enc": torch.arange(D * F, dtype=torch.float32).reshape(D, F),
        "sae/b_enc": torch.arange(F, dtype=torch.float32) * 0.5,
        "sae/W_dec": -torch.arange(F * D, dtype=torch.float32).reshape(F, D),
        "sae/b_dec": torch.tensor([7.0, 8.0, 9.0]),
        "sae/threshold": torch.arange(F, dtype=torch.float32) + 100,
        "optim/W_enc/exp_avg": torch.arange(D * F, dtype=torch.float32).reshape(D, F) / 7,
        "optim/W_enc/exp_avg_sq": torch.arange(D * F, dtype=torch.float64).reshape(D, F) ** 2,
        "optim/W_enc/step": torch.tensor(42.0),
        "optim/W_dec/exp_avg": torch.arange(F * D, dtype=torch.float32).reshape(F, D) + 0.25,
        "tracker/tokens_since_fire_F": torch.arange(F, dtype=torch.int64) * 1000,
    }


def local_slice(name: str, whole: torch.Tensor, part: FeatureSlice) -> torch.Tensor:
    if name not in SHARDED:
        return whole
    return whole.narrow(SHARDED[name], part.lo, part.size)


def _objects(rank: int) -> dict:
    return {"optim/param_groups": [{"lr": 3e-3, "params": [0, 1]}],
            f"rng/rank{rank}": {"rank": rank, "python": random.Random(rank).getstate()}}


def main(argv: list[str]) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    part = FeatureSlice.of_rank(rank, world, F)
    whole = expected_state()
    try:
        if argv[0] == "save":
            local = {k: local_slice(k, v, part).clone() for k, v in whole.items()}
            save_state(Path(argv[1]), local, _objects(rank), SHARDED, part)
            return
        local = {k: torch.zeros_like(local_slice(k, v, part)) for k, v in whole.items()}
        saved_ranks = range(int(argv[2]))
        objects = load_state(Path(argv[1]), local,
                             ["optim/param_groups", *(f"rng/rank{r}" for r in saved_ranks)],
                             SHARDED, part)
        for name, value in local.items():
            if not torch.equal(value, local_slice(name, whole[name], part)):
                raise SystemExit(f"rank {rank}: wrong {name} for {part}: {value}")
        for r in saved_ranks:
            if objects[f"rng/rank{r}"]["rank"] != r:
                raise SystemExit(f"rank {rank}: wrong rng/rank{r}")
        if len(argv) > 3:
            save_state(Path(argv[3]), local, _objects(rank), SHARDED, part)
    finally:
        if world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
