"""The grid of a sweep: its points, their run names and the `TrainConfig` of each.

A point's name reads as its settings and depends on nothing else, so the same point always
maps to the same run folder: `f16k_t2M_l1-5` (F = 16384, 2·10^6 tokens, λ = 5),
`f4k_t1M_lr2e-4_k32`. The lr part appears only when `--lr` is given (otherwise the run uses the
architecture's default, which for topk follows F).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monosemantic.config import ConfigError
from monosemantic.sae import SAEConfig
from monosemantic.sweep.config import (
    SPARSITY_FIELDS,
    SweepConfig,
    parse_features,
    parse_part,
    sparsity_field,
)
from monosemantic.train.config import TrainConfig

_SPARSITY_TAGS = {"l1_coefficient": "l1-", "k": "k", "l0_coefficient": "l0-"}


@dataclass(frozen=True)
class GridPoint:
    """One run of the sweep."""

    n_features: int
    tokens: int
    """Tokens asked for (the run trains ceil(tokens / batch) batches)."""
    lr: float | None
    """None: the architecture's default learning rate."""
    sparsity: tuple[str, float]
    """(SAEConfig field, value), e.g. ("k", 32)."""

    @property
    def name(self) -> str:
        field_name, value = self.sparsity
        parts = [f"f{size_text(self.n_features)}", f"t{tokens_text(self.tokens)}"]
        if self.lr is not None:
            parts.append(f"lr{number_text(self.lr)}")
        parts.append(_SPARSITY_TAGS[field_name] + number_text(value))
        return "_".join(parts)

    def train_config(self, cfg: SweepConfig) -> TrainConfig:
        """The run's `TrainConfig`: the sweep's shared options with this point's settings."""
        from monosemantic.config import to_dict

        field_name, value = self.sparsity
        options: dict[str, Any] = {"architecture": cfg.architecture,
                                   "n_features": self.n_features,
                                   field_name: int(value) if field_name == "k" else float(value)}
        sae = SAEConfig(**options)
        shared = to_dict(cfg.train)
        shared["seed"] = size_seed(cfg.train.seed, self.n_features)
        # Absolute: the runs' metadata then finds the store from any working directory.
        return TrainConfig(out=Path(cfg.out) / self.name, store=Path(cfg.store).resolve(),
                           sae=sae, lr=self.lr, total_tokens=self.tokens, **shared)


def size_seed(seed: int, n_features: int) -> int:
    """The training seed of the runs of one dictionary size: one seed would start every size
    from the same first decoder rows (the init draws them in order), which the splitting
    finding would then read as features that persist across sizes. Runs of one size share it,
    so token, lr and sparsity comparisons start from the same SAE."""
    return (seed * 1_000_003 + n_features) % 2**31


def grid_points(cfg: SweepConfig) -> list[GridPoint]:
    """Every point of the grid, in a fixed order (sizes, then tokens, lr, sparsity), with the
    mistakes that need no data reported first (empty axes, a sparsity axis of another
    architecture, k > F, repeated values)."""
    sizes = _unique("--n-features", [parse_features(v) for v in cfg.n_features])
    tokens = _unique("--tokens", list(cfg.tokens))
    if not sizes or not tokens:
        raise ConfigError("the grid is empty: give at least one --n-features and one --tokens")
    if min(sizes) < 1 or min(tokens) < 1:
        raise ConfigError("--n-features and --tokens take positive values")
    steps = [steps_for(t, cfg.train.batch_size) for t in tokens]
    if len(set(steps)) != len(steps):
        raise ConfigError(f"--tokens {tokens} give the same number of steps of "
                          f"{cfg.train.batch_size:,} tokens twice ({steps}): the runs would be "
                          "the same; drop one")
    lrs: list[float | None] = list(_unique("--lr", list(cfg.lr))) or [None]
    if any(lr is not None and not lr > 0 for lr in lrs):
        raise ConfigError(f"--lr takes values > 0, got {cfg.lr}")
    own = sparsity_field(cfg.architecture)
    for other in SPARSITY_FIELDS:
        if other != own and getattr(cfg, other):
            raise ConfigError(f"--{_flag(other)} does not apply to {cfg.architecture}: its "
                              f"sparsity setting is --{_flag(own)}")
    values = _unique(f"--{_flag(own)}", list(getattr(cfg, own))) or [getattr(SAEConfig(), own)]
    points = [GridPoint(f, t, lr, (own, v))
              for f, t, lr, v in itertools.product(sizes, tokens, lrs, values)]
    for point in points:
        _check_point(cfg, point)
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError("two grid values print the same in the run names (more than 4 "
                          f"significant digits?): {sorted(names)}")
    return points


def my_points(cfg: SweepConfig, points: list[GridPoint]) -> list[GridPoint]:
    """The points `--part i/n` gives this invocation: every n-th, starting at the i-th."""
    index, n = parse_part(cfg.part)
    return points[index::n]


def _check_point(cfg: SweepConfig, point: GridPoint) -> None:
    field_name, value = point.sparsity
    if field_name == "k" and value > point.n_features:
        raise ConfigError(f"k = {value:g} is larger than n_features = {point.n_features} (grid "
                          f"point {point.name}): drop that size or lower --k")
    if point.tokens < cfg.train.batch_size:
        raise ConfigError(f"--tokens {point.tokens:,} is less than one batch of "
                          f"{cfg.train.batch_size:,}: raise --tokens or lower --batch-size")
    point.train_config(cfg)  # SAEConfig's own checks (a k < 1, a negative λ, ...)


def _unique(flag: str, values: list) -> list:
    if len(set(values)) != len(values):
        raise ConfigError(f"{flag} lists a value twice: {values}")
    return values


def _flag(name: str) -> str:
    return name.replace("_", "-")


def size_text(n: int) -> str:
    """A dictionary size with a binary suffix where exact: 16384 -> 16k, 2^20 -> 1M."""
    for suffix, unit in (("M", 2**20), ("k", 2**10)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def tokens_text(n: int) -> str:
    """A token count with a decimal suffix where exact: 2_000_000 -> 2M, 1500 -> 1500."""
    for suffix, unit in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def number_text(x: float) -> str:
    """A short exact-looking number for names: 5 -> 5, 0.5 -> 0.5, 2e-4 -> 2e-4."""
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    if 1e-2 <= abs(x) < 1e6:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def steps_for(tokens: int, batch_size: int) -> int:
    """Optimizer steps of a run asked for `tokens` (as `TrainConfig.total_tokens` resolves)."""
    return math.ceil(tokens / batch_size)
