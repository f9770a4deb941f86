"""One finished run of a sweep: a line of `OUT/sweep.jsonl` (the contract between the sweep,
which writes it, and the scaling-law fits, which read it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from monosemantic.config import from_dict, to_dict
from monosemantic.errors import UserError

SWEEP_TABLE = "sweep.jsonl"
"""File name of the table inside a sweep's output folder."""


@dataclass
class SweepRecord:
    """The figures of one finished run of a sweep."""

    run: str
    """Name of the run's folder inside the sweep folder."""
    architecture: str
    """SAE architecture (relu, topk, batchtopk, jumprelu, matryoshka)."""
    n_features: int
    """Dictionary size F."""
    d_in: int
    """Width d of the activations."""
    tokens: int
    """Training tokens (steps × batch size)."""
    steps: int
    """Optimizer steps."""
    batch_size: int
    """Tokens per optimizer step."""
    lr: float
    """Peak Adam learning rate."""
    flops: float
    """Training compute in FLOPs, by the formula the sweep documents (`flops_formula`)."""
    flops_formula: str
    """The formula `flops` was computed with, e.g. "6·d·F·tokens"."""
    train_loss: float
    """Training loss over the last logging window (the sum of `train_loss_terms`)."""
    train_loss_terms: dict[str, float] = field(default_factory=dict)
    """The named terms of `train_loss` (mse, l1, aux, ...), same window."""
    sparsity: dict[str, float] = field(default_factory=dict)
    """The sparsity setting: {"l1_coefficient": λ}, {"k": k} or {"l0_coefficient": λ}."""
    l0: float | None = None
    """Mean active features per token on the held-out rows (None: not evaluated)."""
    variance_explained: float | None = None
    """Held-out variance explained (None: not evaluated)."""
    dead_fraction: float | None = None
    """Fraction of features that did not fire in the last `dead_window_tokens` training tokens."""
    dead_window_tokens: int | None = None
    """Tokens of the window `dead_fraction` is measured over."""
    loss_recovered: float | None = None
    """Fraction of the language-model loss recovered with the SAE spliced in (None: not
    measured, e.g. the model was not available)."""
    seed: int = 0
    """Training seed."""

    def to_json(self) -> str:
        return json.dumps(to_dict(self), sort_keys=True)


def read_sweep(folder: Path) -> list[SweepRecord]:
    """The records of `folder/sweep.jsonl`, in file order."""
    path = Path(folder) / SWEEP_TABLE
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `monosemantic sweep {folder} ...` first")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(from_dict(SweepRecord, json.loads(line)))
        except (ValueError, TypeError) as err:
            raise UserError(f"{path}, line {n}: not a sweep record ({err})") from err
    return records
