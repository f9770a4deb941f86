"""A crosscoder's training data: one store per site, read row for row, concatenated.

Two layouts (docs/crosscoders.md):
- `--store HARVEST --crosscoder A B ...`: the hooks of one multi-hook harvest (`HARVEST/<hook>/`),
  whose stores hold the same rows in the same order (as a transcoder's pair, `train/paired.py`);
- `--stores A B ...`: one store per site, e.g. the same hook of two models harvested over the
  same corpus with the same tokenizer (model diffing).
Either way every store must hold the same tokens, documents and positions at every row: all
rows are compared (token ids only, no activations read) and the first mismatch is named.

Each site is normalised by its own scale (E‖s_s·x_s‖² = d_s) and the same seed gives every store
the same shuffle (`Permutation` depends only on the row count and the seed), so batch b of one
store is batch b of the others, row for row; the batches are concatenated along the width.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.sae.crosscoder import Site
from monosemantic.train.config import TrainConfig
from monosemantic.train.data import StoreData

ROW_CHECK_CHUNK = 1 << 20
"""Rows whose token ids are compared at a time."""


def site_store_paths(cfg: TrainConfig) -> list[Path]:
    """The store of each site: `STORE/<hook>` for --crosscoder, else the --stores."""
    if cfg.stores:
        paths = [Path(p) for p in cfg.stores]
        for path in paths:
            if not path.is_dir():
                raise UserError(f"--stores: {path} does not exist (one activation store per "
                                "site, from `monosemantic harvest`)")
            inner = sorted(p.name for p in path.iterdir() if (p / "manifest.json").is_file())
            if not (path / "manifest.json").is_file() and inner:
                raise UserError(f"--stores: {path} is a harvest of several hooks "
                                f"({', '.join(inner)}): give the store of one hook, e.g. "
                                f"{path / inner[0]}")
        return paths
    assert cfg.store is not None
    paths = [Path(cfg.store) / hook for hook in cfg.crosscoder]
    missing = [hook for hook, path in zip(cfg.crosscoder, paths) if not path.is_dir()]
    if missing:
        hooks = " ".join(cfg.crosscoder)
        raise UserError(f"{cfg.store} holds no store of {', '.join(missing)}: --store must be a "
                        f"harvest of every --crosscoder hook (`monosemantic harvest --hooks "
                        f"{hooks} --out {cfg.store}`)")
    return paths


class SiteData:
    """Concatenated, per-site normalised batches of several aligned stores; the `TrainData` of
    a crosscoder. `d` is the concatenated width, `site_widths` the sites' widths."""

    norm_scale = 1.0
    """The concatenation has no single scale: each site's is in `sites` (checkpoints record
    this 1.0)."""

    def __init__(self, cfg: TrainConfig, part: tuple[int, int] = (0, 1)):
        if part[1] > 1:
            raise UserError("crosscoders train in one process (not under torchrun)")
        self.parts = [StoreData(cfg, part, path) for path in site_store_paths(cfg)]
        check_same_rows([p.store for p in self.parts])
        self.sites = [Site(hook=p.store.hook, model=p.store.model, d=p.d,
                           norm_scale=p.norm_scale, store=str(p.path.resolve()))
                      for p in self.parts]
        self.site_widths = tuple(s.d for s in self.sites)
        self.d = sum(self.site_widths)
        self.n_train_rows = self.parts[0].n_train_rows

    def train_batches(self, start_step: int) -> Iterator[Tensor]:
        return _cat_closing([p.train_batches(start_step) for p in self.parts])

    def eval_batches(self, max_rows: int) -> Iterator[Tensor]:
        return _cat_closing([p.eval_batches(max_rows) for p in self.parts])

    def metadata(self) -> dict[str, Any]:
        first = self.parts[0].metadata()
        models = sorted({s.model for s in self.sites})
        return {**first, "model": models[0] if len(models) == 1 else None,
                "hook": None, "store": None, "sites": [asdict(s) for s in self.sites],
                "site_models": models}


def _cat_closing(parts: list[Iterator[Tensor]]) -> Iterator[Tensor]:
    """The sites' batches concatenated along the width; closing it closes every reader."""
    try:
        for batches in zip(*parts):
            yield torch.cat(batches, dim=1)
    finally:
        for it in parts:
            close = getattr(it, "close", None)
            if close is not None:
                close()


def check_same_rows(stores: list[Any]) -> None:
    """Refuse stores whose rows are not the same tokens (ids, documents, positions) in the
    same order, naming the first row that differs. `stores`: `ActivationStore`s."""
    first = stores[0]
    for other in stores[1:]:
        if other.n_rows != first.n_rows:
            raise UserError(f"{first.path} has {first.n_rows:,} rows and {other.path} "
                            f"{other.n_rows:,}: a crosscoder's stores must hold the same tokens "
                            "row for row (harvest the same corpus with the same --tokens, "
                            "--ctx-len and tokenizer)")
    for lo in range(0, first.n_rows, ROW_CHECK_CHUNK):
        rows = range(lo, min(first.n_rows, lo + ROW_CHECK_CHUNK))
        ref = first.row_meta(rows)
        for other in stores[1:]:
            _first_mismatch(first, other, ref, other.row_meta(rows), lo)


def _first_mismatch(a: Any, b: Any, meta_a: tuple[Tensor, ...], meta_b: tuple[Tensor, ...],
                    offset: int) -> None:
    for name, col_a, col_b in zip(("token", "document", "position"), meta_a, meta_b):
        differ_N = (col_a != col_b).nonzero()
        if differ_N.numel():
            i = int(differ_N[0])
            raise UserError(
                f"{a.path} and {b.path} differ at row {offset + i:,}: {name} "
                f"{int(col_a[i])} vs {int(col_b[i])}. A crosscoder's stores must hold the same "
                "tokens row for row: harvest both models over the same corpus with the same "
                "tokenizer, --tokens and --ctx-len")
