"""Per-rank memory and per-step communication of SAE training on N devices (a model, not a
measurement). Notation: d = `d_in`, F = `n_features`, B = global tokens per step, N = world,
P × Q = N the data × feature mesh (mode `data`: P = N, Q = 1; `features`: P = 1, Q = N),
b = ⌈B/P⌉ tokens per rank, f = ⌈F/Q⌉ features per rank (ceil: the last shard may be smaller,
the plan sizes every rank like the largest). GB = 10⁹ bytes.

Memory per rank (bytes; p, s, a = bytes of a parameter, an Adam state, an activation):
- parameters n_p = 2·d·f + f + d (W_enc d×f, W_dec f×d and b_enc f sharded over the feature
  axis; b_dec d replicated): n_p·p; gradients n_p·p; Adam m and v 2·n_p·s.
- activations of one step: x and x̂ and x̂'s gradient 3·b·d·a, two b×f buffers 2·b·f·a (relu:
  the codes, written over the pre-activations, and their gradient; topk: the pre-activations
  and AuxK's dead-masked copy), topk also the b×k' kept codes: b·k'·(a + 8) (int64 indices),
  with k' = min(k, f).

Bytes each rank sends per step (ring collectives over n ranks):
- all-reduce of S bytes: 2·(n−1)/n·S; all-gather of s bytes from each rank: (n−1)·s.
- data axis (P > 1): all-reduce of the rank's gradients, S = n_p·p.
- feature axis (Q > 1): all-reduce of the partial decodes x̂_q = f_q·W_dec,q + (b_dec on one
  rank), S = b·d·a; topk first all-gathers each rank's local top-k' candidates,
  s = b·k'·(a + 8), and every rank picks the global top k from the Q·k' candidates.
  b_dec's gradient needs no feature-axis traffic: every feature rank holds the whole x̂, so
  its gradient is the same on all of them. Scalars (loss, gradient norm) are left out.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from monosemantic.config import parse_count
from monosemantic.errors import UserError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
INDEX_BYTES = 8
"""torch.topk's indices are int64; an implementation may send int32 (then halve that term)."""
GB = 10**9
MAX_WORLD = 1 << 20
"""The largest world size `min_devices` tries."""

Dtype = Literal["float32", "bfloat16"]


@dataclass
class PlanMemoryConfig:
    """Options of `monosemantic plan-memory`."""

    d_in: int = 4096
    """Width d of the activations the SAE reads (the model's residual width)."""
    n_features: int = 33_554_432
    """Dictionary size F; suffixes allowed (34M = 34,000,000). Default: the paper's '34M'
    SAE, 2^25 = 33,554,432."""
    world: int = 1
    """Number of devices N."""
    mode: Literal["data", "features", "mesh"] = "features"
    """data: every rank holds the whole SAE and B/N tokens; features: every rank holds F/N
    features and all B tokens; mesh: a data × features grid (see --data-parallel)."""
    data_parallel: int = 1
    """Mode mesh only: the data axis P; the feature axis is Q = world / P (must divide)."""
    batch_size: int = 4096
    """Tokens per optimizer step, over all ranks (the paper's April 2024 update: 4096)."""
    architecture: Literal["relu", "topk"] = "relu"
    """relu (also stands for jumprelu) or topk (also batchtopk): sets the activations kept
    and the feature-axis traffic."""
    k: int = 64
    """topk: codes kept per token."""
    param_dtype: Dtype = "float32"
    """Dtype of the parameters and their gradients."""
    state_dtype: Dtype = "float32"
    """Dtype of Adam's m and v."""
    act_dtype: Dtype = "float32"
    """Dtype of the activations and of what the feature axis sends."""
    device_gb: float = 80.0
    """Memory of one device in GB (10^9 bytes); an H100 80GB holds 80 GiB ≈ 85.9 GB."""
    headroom: float = 0.9
    """Fraction of device_gb the plan may fill (the rest: CUDA context, allocator slack,
    NCCL buffers)."""
    table: bool = False
    """Print the grid F ∈ {1M, 4M, 16M, 34M} × d ∈ {640, 2304, 4096, 8192} for this world and
    mode instead of one plan."""
    json_out: Path | None = None
    """Also write the plan (or the grid) as JSON to this file."""


@dataclass(frozen=True)
class MemoryPlan:
    """Per-rank bytes of one configuration (formulas in the module docstring)."""

    data_parallel: int
    """P."""
    feature_parallel: int
    """Q."""
    local_batch: int
    """b = ⌈B/P⌉."""
    local_features: int
    """f = ⌈F/Q⌉."""
    n_params: int
    """Parameters per rank, n_p = 2·d·f + f + d."""
    params: int
    grads: int
    adam: int
    activations: int
    grad_allreduce: int
    """Bytes sent per step by the data-axis gradient all-reduce."""
    decode_allreduce: int
    """Bytes sent per step by the feature-axis all-reduce of partial decodes."""
    candidate_allgather: int
    """Bytes sent per step by the feature-axis all-gather of top-k candidates (topk)."""
    budget: int
    """Bytes a rank may use: device_gb · headroom."""

    @property
    def total(self) -> int:
        return self.params + self.grads + self.adam + self.activations

    @property
    def sent(self) -> int:
        return self.grad_allreduce + self.decode_allreduce + self.candidate_allgather

    @property
    def fits(self) -> bool:
        return self.total <= self.budget


def ring_allreduce_bytes(size: int, n: int) -> int:
    """Bytes each of n ranks sends in a ring all-reduce of `size` bytes: 2·(n−1)/n·size."""
    return 0 if n <= 1 else math.ceil(2 * (n - 1) * size / n)


def ring_allgather_bytes(size: int, n: int) -> int:
    """Bytes each of n ranks sends in a ring all-gather of `size` bytes per rank: (n−1)·size."""
    return (n - 1) * size


def count(value: int | str, name: str) -> int:
    """`value` as an integer (suffixes K/M/B allowed); a bad one is a UserError."""
    try:
        return parse_count(value)
    except argparse.ArgumentTypeError as err:
        raise UserError(f"--{name.replace('_', '-')}: {err}") from err


def mesh(cfg: PlanMemoryConfig) -> tuple[int, int]:
    """(P, Q) of `cfg`, checked."""
    if cfg.world < 1:
        raise UserError(f"--world {cfg.world}: needs at least 1 device")
    if cfg.mode == "data":
        return cfg.world, 1
    if cfg.mode == "features":
        return 1, cfg.world
    if cfg.data_parallel < 1 or cfg.world % cfg.data_parallel:
        raise UserError(f"--data-parallel {cfg.data_parallel} must divide --world {cfg.world}")
    return cfg.data_parallel, cfg.world // cfg.data_parallel


def check(cfg: PlanMemoryConfig, d: int, n_features: int, batch: int) -> None:
    for name, value in (("d_in", d), ("n_features", n_features), ("batch_size", batch)):
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    if cfg.architecture == "topk" and not 1 <= cfg.k <= n_features:
        raise UserError(f"--k {cfg.k}: must be between 1 and --n-features {n_features}")
    if cfg.device_gb <= 0 or not 0 < cfg.headroom <= 1:
        raise UserError("--device-gb must be positive and --headroom in (0, 1]")


def plan_memory(cfg: PlanMemoryConfig) -> MemoryPlan:
    """Per-rank memory and per-step traffic of `cfg` (formulas in the module docstring)."""
    d = count(cfg.d_in, "d_in")
    n_features = count(cfg.n_features, "n_features")
    batch = count(cfg.batch_size, "batch_size")
    check(cfg, d, n_features, batch)
    p_axis, q_axis = mesh(cfg)
    if batch < p_axis:
        raise UserError(f"--batch-size {batch} is smaller than the data axis {p_axis}: "
                        "every data rank needs at least one token")
    b, f = -(-batch // p_axis), -(-n_features // q_axis)
    pb, sb, ab = (DTYPE_BYTES[t] for t in (cfg.param_dtype, cfg.state_dtype, cfg.act_dtype))
    n_params = 2 * d * f + f + d
    acts = 3 * b * d * ab + 2 * b * f * ab
    kept = 0
    if cfg.architecture == "topk":
        kept = b * min(cfg.k, f) * (ab + INDEX_BYTES)
        acts += kept
    return MemoryPlan(
        data_parallel=p_axis, feature_parallel=q_axis, local_batch=b, local_features=f,
        n_params=n_params, params=n_params * pb, grads=n_params * pb, adam=2 * n_params * sb,
        activations=acts,
        grad_allreduce=ring_allreduce_bytes(n_params * pb, p_axis),
        decode_allreduce=ring_allreduce_bytes(b * d * ab, q_axis),
        candidate_allgather=ring_allgather_bytes(kept, q_axis),
        budget=int(cfg.device_gb * cfg.headroom * GB),
    )


def with_world(cfg: PlanMemoryConfig, world: int) -> PlanMemoryConfig:
    """`cfg` on `world` devices (mesh keeps its data axis)."""
    return PlanMemoryConfig(**{**vars(cfg), "world": world})


def min_devices(cfg: PlanMemoryConfig) -> int | None:
    """Smallest world size (a multiple of --data-parallel in mode mesh) whose per-rank total
    fits device_gb · headroom; None if none up to MAX_WORLD does (mode data never shrinks the
    parameters). Binary search: per-rank bytes never grow with the world (⌈F/Q⌉, ⌈B/P⌉)."""
    step = cfg.data_parallel if cfg.mode == "mesh" else 1
    batch = count(cfg.batch_size, "batch_size")
    # Mode data cannot split B tokens over more than B ranks.
    top = min(MAX_WORLD // step, batch) if cfg.mode == "data" else MAX_WORLD // step

    def fits(m: int) -> bool:
        return plan_memory(with_world(cfg, m * step)).fits

    if top < 1 or not fits(top):
        return None
    lo, hi = 1, top
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo * step
