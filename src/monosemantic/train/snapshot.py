"""A `TrainState` as a checkpoint folder and back, at any world size and feature slicing.

Entries: `sae/NAME` (the SAE's state_dict), `optim/PARAM/KEY` (Adam's per-parameter state) and
`optim/param_groups`, `tracker/*_F`, `recon/*`, `losses/*`, and `rng/rankR` per rank; the
scalars (step, counters, configs) go to `meta.json`. The per-feature entries (`SAE.feature_dims`,
the Adam moments of those parameters, the tracker's `*_F` counters along dim 0) are sharded by
the rank's `FeatureSlice`; the rest is replicated and written from rank 0, which holds the
folded metric sums. RNG states are saved per rank; a rank the checkpoint has none for (more
ranks than at saving) takes rank 0's. That is exact here: every rank seeds the global RNGs
alike and the training step draws from none of them (batches come from seeded readers), so
all ranks' states are equal; they are kept for code that does draw (custom data, compile).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import to_dict
from monosemantic.distributed import Ranks
from monosemantic.errors import UserError
from monosemantic.train.checkpoint import (
    META,
    read_meta,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from monosemantic.train.config import changed_fields
from monosemantic.train.dcp import FeatureSlice, load_state, save_state, saved_entries

if TYPE_CHECKING:
    from monosemantic.train.config import TrainConfig
    from monosemantic.train.state import TrainState

CHECKPOINT_VERSION = 2
_GROUPS = "optim/param_groups"


def save_snapshot(state: TrainState, run_dir: Path, keep: int, wall_time: float,
                  norm_scale: float, ranks: Ranks) -> Path:
    """Write the checkpoint of `state.step` (every rank calls it); returns its folder."""
    tensors = _tensors(state)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    dims = state.sae.feature_dims
    sharded = {k: d for k in tensors if (d := _feature_dim(k, shapes, dims)) is not None}
    objects = {_GROUPS: state.optimizer.state_dict()["param_groups"],
               f"rng/rank{ranks.rank}": rng_state(state.device)}
    part = _part(state)
    return write_checkpoint(
        run_dir, state.step, lambda folder: save_state(folder, tensors, objects, sharded, part),
        _meta(state, wall_time, norm_scale, ranks), keep, ranks.is_main)


def load_snapshot(state: TrainState, path: Path, ranks: Ranks) -> None:
    """Restore `state` (this rank's slice) from the checkpoint folder `path` (every rank calls
    it). `check_snapshot` has vetted the checkpoint."""
    meta = read_meta(path)
    entries = saved_entries(path)
    shapes = {k: e[0] for k, e in entries.items() if e is not None}
    dims, part = state.sae.feature_dims, _part(state)
    tensors, sharded = {}, {}
    for key, shape in shapes.items():
        dim = _feature_dim(key, shapes, dims)
        local = list(shape)
        if dim is not None:
            sharded[key], local[dim] = dim, part.size
        tensors[key] = torch.empty(local, dtype=entries[key][1])  # type: ignore[index]
    own = f"rng/rank{ranks.rank}" if ranks.rank < int(meta["world"]) else "rng/rank0"
    objects = load_state(path, tensors, [_GROUPS, own], sharded, part)

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    state.sae.load_state_dict(group("sae/"))
    state.optimizer.load_state_dict(_optimizer_state(state, group("optim/"), objects[_GROUPS]))
    state.tracker.load_state_dict({**meta["tracker"], **group("tracker/")})
    state.recon.load_state_dict({**meta["recon"], **group("recon/")})
    state.losses.load_state_dict({**meta["losses"], **group("losses/")})
    set_rng_state(objects[own], state.device)
    state.step = int(meta["step"])
    state.wall_time = float(meta["wall_time"])
    state.last_records = dict(meta["last_records"])


def check_snapshot(path: Path, cfg: TrainConfig) -> None:
    """Refuse (UserError) a checkpoint this run cannot continue from: another format, or
    written by a run whose config differs in a field that changes the result."""
    if not (path / META).is_file():
        raise UserError(f"checkpoint {path} has no {META} (not written by this trainer): "
                        "delete it to resume from the one before")
    meta = read_meta(path)
    if meta.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"checkpoint {path} has format version {meta.get('version')}, this "
                        f"trainer reads {CHECKPOINT_VERSION}: start a new run directory")
    saved_d, d_in = int(meta["sae_cfg"]["d_in"]), cfg.sae.d_in
    if saved_d != d_in:
        raise UserError(
            f"checkpoint {path} is for activations of width {saved_d}, but the data has "
            f"width {d_in}: use the store/hook the run started with, or a new output directory")
    diff = changed_fields(meta["cfg"], to_dict(cfg))
    if diff:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise UserError(
            f"checkpoint {path} was written by another run ({changes}); delete it (and any "
            "later ones) to restart this run, or train that run in its own directory")


def _part(state: TrainState) -> FeatureSlice:
    return state.features or FeatureSlice.whole(state.cfg.sae.n_features)


def _feature_dim(key: str, shapes: dict[str, tuple[int, ...]],
                 dims: dict[str, int]) -> int | None:
    """The dim along which entry `key` runs over the features, or None (replicated)."""
    group, _, name = key.partition("/")
    if group == "sae":
        return dims.get(name)
    if group == "optim":  # a moment shaped like its per-feature parameter follows it
        param = name.rpartition("/")[0]
        if param in dims and shapes[key] == shapes.get(f"sae/{param}"):
            return dims[param]
        return None
    return 0 if group == "tracker" and name.endswith("_F") else None


def _tensors(state: TrainState) -> dict[str, torch.Tensor]:
    """This rank's tensors of `state`, on the CPU, by entry name."""
    out = {f"sae/{k}": v.detach().cpu() for k, v in state.sae.state_dict().items()}
    for name, param in state.sae.named_parameters():
        for key, value in state.optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor):
                out[f"optim/{name}/{key}"] = value.detach().cpu()
    tracker, recon, losses = state.tracker, state.recon, state.losses
    out["tracker/tokens_since_fire_F"] = tracker.tokens_since_fire_F.cpu()
    out["tracker/fires_in_window_F"] = tracker.fires_in_window_F.cpu()
    out["recon/sum_x_D"], out["recon/sums"] = recon.sum_x_D.cpu(), recon.sums.cpu()
    out["losses/sums"] = losses.sums.cpu()
    out["losses/first_bad_step"] = losses.first_bad_step.cpu()
    return out


def _meta(state: TrainState, wall_time: float, norm_scale: float,
          ranks: Ranks) -> dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "step": state.step,
        "world": ranks.world,
        "feature_sharded": state.features is not None,
        "cfg": to_dict(state.cfg),
        "sae_cfg": to_dict(state.sae.cfg),
        "wall_time": wall_time,
        "norm_scale": float(norm_scale),
        "last_records": state.last_records,
        "tracker": {"window_tokens": state.tracker.window_tokens,
                    "tokens_in_window": state.tracker.tokens_in_window},
        "recon": {"rows": state.recon.rows},
        "losses": {"names": list(state.losses.names), "steps": state.losses.steps},
    }


def _optimizer_state(state: TrainState, saved: dict[str, torch.Tensor],
                     groups: list[dict[str, Any]]) -> dict[str, Any]:
    """`Optimizer.load_state_dict`'s input: per-parameter state keyed by the parameter's index
    in the optimizer (its `state_dict` numbering), from the `PARAM/KEY` entries."""
    order = [id(p) for group in state.optimizer.param_groups for p in group["params"]]
    index = {name: order.index(id(p)) for name, p in state.sae.named_parameters()
             if id(p) in order}
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in saved.items():
        name, _, item = key.rpartition("/")
        if name in index:
            per_param.setdefault(index[name], {})[item] = value
    return {"state": per_param, "param_groups": groups}
