"""Synthetic sweep tables drawn from a known law L = E + A·F^(−α) + B·D^(−β), for the
scaling-law fits: the truth is known, so the fits can be checked against it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monosemantic.sweep.record import SWEEP_TABLE, SweepRecord


@dataclass(frozen=True)
class TrueLaw:
    E: float = 0.05
    A: float = 2.0
    alpha: float = 0.5
    B: float = 5.0
    beta: float = 0.3

    def __call__(self, f: float, d: float) -> float:
        return self.E + self.A * f ** -self.alpha + self.B * d ** -self.beta

    @property
    def features_exponent(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def tokens_exponent(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def loss_exponent(self) -> float:
        return -self.alpha * self.beta / (self.alpha + self.beta)


@dataclass
class Grid:
    sizes: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)
    tokens: tuple[int, ...] = (2**17, 2**19, 2**21, 2**23, 2**25, 2**27)
    lrs: tuple[float, ...] = (2e-4,)
    d_in: int = 64
    batch_size: int = 4096
    noise: float = 0.01
    """Standard deviation of the multiplicative log-normal noise on every loss."""
    seed: int = 0
    architecture: str = "topk"
    sparsity: dict[str, float] = field(default_factory=lambda: {"k": 32})
    lr_law: tuple[float, float] = (3e-2, -0.15)
    """(coef, exponent) of the true optimal lr against compute; the loss grows with
    (log lr − log lr_opt)² around it."""


def synthetic_records(law: TrueLaw, grid: Grid) -> list[SweepRecord]:
    """One record per (size, tokens, lr), flops = 6·d·F·tokens."""
    rng = np.random.default_rng(grid.seed)
    records = []
    for f in grid.sizes:
        for d in grid.tokens:
            flops = 6.0 * grid.d_in * f * d
            lr_opt = grid.lr_law[0] * flops ** grid.lr_law[1]
            for lr in grid.lrs:
                penalty = 1.0 + 0.05 * math.log(lr / lr_opt) ** 2 if len(grid.lrs) > 1 else 1.0
                loss = law(f, d) * penalty * math.exp(grid.noise * rng.standard_normal())
                records.append(SweepRecord(
                    run=f"f{f}_t{d}_lr{lr:g}", architecture=grid.architecture, n_features=f,
                    d_in=grid.d_in, tokens=d, steps=d // grid.batch_size,
                    batch_size=grid.batch_size, lr=lr, flops=flops,
                    flops_formula="6·d·F·tokens", train_loss=loss,
                    train_loss_terms={"mse": 0.9 * loss, "aux": 0.1 * loss},
                    sparsity=dict(grid.sparsity), variance_explained=1.0 - loss))
    return records


def write_sweep(folder: Path, records: list[SweepRecord]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SWEEP_TABLE).write_text("".join(r.to_json() + "\n" for r in records))
    return folder
