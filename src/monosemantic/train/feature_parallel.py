"""Feature-parallel training under torchrun (`--parallel features`): the dictionary split over
the ranks (or over each row of a data × features grid, `--feature-ranks`; `mesh`).

Rank r of N holds the features [r·F/N, (r+1)·F/N) (encoder columns, decoder rows, per-feature
buffers, their Adam states and dead-feature counters) and reads the same whole global batch as
every other rank; b_dec, the step counters and the metric sums are replicated. The SAE computes
its forward with the others (`sae.sharded`), so the loss, x̂ and b_dec's gradient come out the
same on every rank and each rank's gradients are those of its slice: no gradient all-reduce.
What the trainer adds here: the shard itself, the global gradient norm for clipping, and the
final SAE gathered to rank 0 (which writes the ordinary SAELens folder).

On a grid (`--feature-ranks Q` < N) all of this holds within each feature group of Q ranks,
which reads its own slice of every batch; the groups are data-parallel to each other, and the
first one alone writes checkpoints and the final SAE.

Each rank draws the initial SAE's random numbers for the whole dictionary from the seed, chunk
by chunk, and keeps its slice (`create_sae` with a shard): exactly the unsharded init, in the
memory of the slice. Checkpoints are sharded: every rank writes and reads its own slice
(`TrainState.features`, `train/snapshot.py`), so a run resumes at another number of ranks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.distributed import Ranks
from monosemantic.errors import UserError
from monosemantic.sae.factory import sae_class
from monosemantic.train.mesh import grid

if TYPE_CHECKING:
    from monosemantic.sae import SAE
    from monosemantic.train.config import TrainConfig
    from monosemantic.train.data import TrainData
    from monosemantic.train.state import TrainState


@dataclass(frozen=True)
class FeatureShard(Ranks):
    """This rank's slice [lo, hi) of a dictionary of `n_features` split over the ranks of its
    feature group (a `sae.sharded.FeatureGroup`)."""

    lo: int = 0
    hi: int = 0
    n_features: int = 0


def feature_layout(cfg: TrainConfig, ranks: Ranks, custom_data: bool = False
                   ) -> tuple[FeatureShard | None, Ranks]:
    """(this rank's shard of the dictionary, its data-parallel axis) when `cfg` asks for
    feature-parallel training under torchrun; otherwise (None, `ranks`). `UserError` on every
    rank, before any collective, for what it cannot train."""
    if cfg.parallel != "features" or not ranks.active:
        return None, ranks
    if custom_data or cfg.store is None:
        raise UserError("--parallel features reads a stored activation store: pass --store "
                        "(streaming and custom data sources train in one process)")
    if cfg.compile:
        raise UserError("--compile is not supported with --parallel features yet: leave it off")
    if not sae_class(cfg.sae.architecture).supports_feature_parallel:
        raise UserError(f"--parallel features cannot train a {cfg.sae.architecture} SAE (its "
                        "losses are not split over feature shards): use --parallel data or "
                        "one process")
    n_feature_ranks = cfg.feature_ranks or ranks.world
    if ranks.world % n_feature_ranks == 0:  # else `grid` says so
        _check_split(cfg.sae.n_features, n_feature_ranks)  # before `grid`'s collectives
    features, data = grid(ranks, n_feature_ranks)
    return split_features(features, cfg.sae.n_features), data


def _check_split(n_features: int, n_ranks: int) -> None:
    if n_features % n_ranks:
        fits = [n for n in range(1, min(n_features, 64) + 1) if n_features % n == 0]
        raise UserError(
            f"--parallel features splits the {n_features} features into equal slices, which "
            f"{n_ranks} ranks cannot do: use a number of ranks that divides {n_features} "
            f"(up to 64: {', '.join(map(str, fits))}) or change --n-features")


def split_features(ranks: Ranks, n_features: int) -> FeatureShard:
    """This rank's contiguous equal slice of `n_features` among `ranks` (in their group);
    `UserError` when their number does not divide it."""
    _check_split(n_features, ranks.world)
    width = n_features // ranks.world
    return FeatureShard(rank=ranks.rank, world=ranks.world, group=ranks.group,
                        lo=ranks.rank * width, hi=(ranks.rank + 1) * width, n_features=n_features)


@torch.no_grad()
def clip_grad_norm_(sae: SAE, shard: FeatureShard, max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` over the whole dictionary: the sharded parameters'
    squared norms summed over the ranks, the replicated ones (the same on every rank) once."""
    sharded = torch.zeros((), dtype=torch.float32, device=sae.b_dec.device)
    replicated = torch.zeros_like(sharded)
    grads = []
    for name, p in sae.named_parameters():
        if p.grad is None:
            continue
        grads.append(p.grad)
        target = sharded if name in sae.feature_dims else replicated
        target.add_(p.grad.float().pow(2).sum())
    total = (shard.sum_(sharded) + replicated).sqrt()
    # As torch's: scale by max_norm / (norm + 1e-6) when that is below 1.
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))


def _gather(t: torch.Tensor, dim: int, shard: FeatureShard) -> torch.Tensor | None:
    """The ranks' slices of one tensor joined along `dim` on rank 0's host (None on the others).
    Each rank's slice is broadcast in turn, so no rank holds more than one other slice on its
    device at a time."""
    t = t.detach().contiguous()
    parts = []
    for src in range(shard.world):
        buf = t.clone() if src == shard.rank else torch.empty_like(t)
        shard.broadcast_(buf, src)
        if shard.is_main:
            parts.append(buf.cpu())
    return torch.cat(parts, dim) if shard.is_main else None


def _gather_dict(tensors: Mapping[str, Any], dims: Mapping[str, int],
                 shard: FeatureShard) -> dict[str, Any] | None:
    """`tensors` with the entries named in `dims` gathered whole (rank 0; None elsewhere)."""
    out = {name: (_gather(t, dims[name], shard) if name in dims else t)
           for name, t in tensors.items()}
    return out if shard.is_main else None


def _host_state(state: TrainState) -> TrainState:
    """A whole-dictionary `TrainState` on the host sharing `state`'s metric sums, step and
    clock (its SAE and Adam are filled in by the caller). The global RNG is left as it was."""
    from monosemantic.train.state import TrainState

    d_in = int(state.sae.b_dec.shape[0])  # the SAE's (CLTs are never feature-sharded)
    with torch.random.fork_rng(devices=[]):
        host = TrainState.create(state.cfg, d_in, torch.device("cpu"))
    return dataclasses.replace(host, recon=state.recon, losses=state.losses,
                               device=state.device, step=state.step,
                               wall_time=state.wall_time, last_records=state.last_records)


def save_gathered_sae(state: TrainState, shard: FeatureShard, out_dir: Path, data: TrainData,
                      summary: dict[str, Any]) -> None:
    """`TrainState.save_final_sae` of the whole dictionary, gathered to rank 0 (which writes
    the ordinary SAELens folder). Every rank must call it."""
    weights = _gather_dict(state.sae.state_dict(), state.sae.feature_dims, shard)
    if weights is None:
        return
    host = _host_state(state)
    host.sae.load_state_dict(weights)
    host.save_final_sae(out_dir, data, summary)
