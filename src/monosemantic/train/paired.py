"""A transcoder's training data: two stores of the same harvest, read in the same order.

`monosemantic harvest --hooks A B` writes one store per hook with the same rows in the same
order, so row i of both is the same token. Each store is normalised by its own scale (E‖s·x‖²
= d at the input site, E‖t·y‖² = d at the target site), and the same seed gives both the same
shuffle (`Permutation` depends only on the row count and the seed): batch b of one store is
batch b of the other, row for row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.train.config import TrainConfig
from monosemantic.train.data import StoreData

PAIR_CHECK_ROWS = 64
"""Rows (spread over the store) whose token, document and position must agree in both stores."""


def paired_store_paths(cfg: TrainConfig) -> tuple[Path, Path]:
    """The input and target stores: `STORE/<hook_in>` and `STORE/<hook_out>` (a multi-hook
    harvest's layout)."""
    assert cfg.store is not None and cfg.hook_in is not None and cfg.hook_out is not None
    paths = Path(cfg.store) / cfg.hook_in, Path(cfg.store) / cfg.hook_out
    for hook, path in zip((cfg.hook_in, cfg.hook_out), paths):
        if not path.is_dir():
            raise UserError(f"{path} does not exist: --store must be a harvest of both hooks "
                            f"(`monosemantic harvest --hooks {cfg.hook_in} {cfg.hook_out} "
                            f"--out {cfg.store}`), which keeps {hook} in {path}")
    return paths


class PairedStoreData:
    """(input, target) batches of two stores harvested together; the `TrainData` of a
    transcoder. Its `d` and `norm_scale` are the input site's, `d_out` and
    `target_norm_scale` the target site's."""

    def __init__(self, cfg: TrainConfig, part: tuple[int, int] = (0, 1)):
        path_in, path_out = paired_store_paths(cfg)
        self.source = StoreData(cfg, part, path_in)
        self.target = StoreData(cfg, part, path_out)
        check_pair(self.source, self.target)
        self.d, self.d_out = self.source.d, self.target.d
        self.norm_scale = self.source.norm_scale
        self.target_norm_scale = self.target.norm_scale
        self.n_train_rows = self.source.n_train_rows

    def train_batches(self, start_step: int) -> Iterator[tuple[Tensor, Tensor]]:
        return _zip_closing(self.source.train_batches(start_step),
                            self.target.train_batches(start_step))

    def eval_batches(self, max_rows: int) -> Iterator[tuple[Tensor, Tensor]]:
        return _zip_closing(self.source.eval_batches(max_rows),
                            self.target.eval_batches(max_rows))

    def metadata(self) -> dict[str, Any]:
        out = self.target.metadata()
        return {**self.source.metadata(), "hook_out": out["hook"], "store_out": out["store"],
                "target_norm_scale": self.target_norm_scale, "d_out": self.d_out}


def _zip_closing(a: Iterator[Tensor], b: Iterator[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
    """The pairs of `a` and `b`; closing it closes both (their store readers' prefetch
    threads)."""
    try:
        yield from zip(a, b)
    finally:
        for it in (a, b):
            close = getattr(it, "close", None)
            if close is not None:
                close()


def check_pair(source: StoreData, target: StoreData) -> None:
    """Refuse two stores whose rows are not the same tokens in the same order."""
    a, b = source.store, target.store
    if a.n_rows != b.n_rows or a.model != b.model:
        raise UserError(f"{a.path} ({a.n_rows:,} rows of {a.model}) and {b.path} ({b.n_rows:,} "
                        f"rows of {b.model}) are not one harvest: harvest both hooks together "
                        "(`monosemantic harvest --hooks IN OUT`)")
    index_N = np.unique(np.linspace(0, a.n_rows - 1, PAIR_CHECK_ROWS).astype(np.int64))
    rows_a, rows_b = a.take(index_N), b.take(index_N)
    for name in ("tokens_N", "doc_ids_N", "positions_N"):
        if not torch.equal(getattr(rows_a, name), getattr(rows_b, name)):
            raise UserError(f"{a.path} and {b.path} hold different tokens at the same rows: "
                            "harvest both hooks together (`monosemantic harvest --hooks IN OUT`)")
