"""A cross-layer transcoder's training data: the MLP input and output stores of every CLT
layer, from one multi-hook harvest, read row for row.

`monosemantic harvest --hooks blocks.0.hook_mlp_in blocks.0.hook_mlp_out ...` writes one store
per hook (`HARVEST/<hook>/`) with the same rows in the same order. As for a transcoder's pair
(`train/paired.py`), every store is normalised by its own scale and read with the same seed,
so batch b of each is the same rows; each batch is the n input sites side by side,
x [B, n·d_in], with the n target sites, y [B, n·d_out] (`sae/clt.py`'s layout).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from monosemantic.errors import UserError
from monosemantic.sae.clt import parse_layers
from monosemantic.sae.clt_io import HOOK_IN_TEMPLATE, HOOK_OUT_TEMPLATE
from monosemantic.train.config import TrainConfig
from monosemantic.train.data import StoreData
from monosemantic.train.paired import check_pair


def clt_hooks(layers: Sequence[int]) -> tuple[list[str], list[str]]:
    """The MLP input and output hook names of `layers`."""
    return ([HOOK_IN_TEMPLATE.format(layer=layer) for layer in layers],
            [HOOK_OUT_TEMPLATE.format(layer=layer) for layer in layers])


def clt_store_paths(harvest: Path, layers: Sequence[int]) -> tuple[list[Path], list[Path]]:
    """`HARVEST/<hook>` of every CLT layer's two hooks; a UserError names all missing ones."""
    hooks_in, hooks_out = clt_hooks(layers)
    missing = [h for h in hooks_in + hooks_out if not (Path(harvest) / h).is_dir()]
    if missing:
        layer_list = ",".join(map(str, layers))
        raise UserError(
            f"{harvest} holds no store of {', '.join(missing)}: --store must be a harvest of "
            f"the MLP input and output of every layer in --clt-layers {layer_list} "
            f"(`monosemantic harvest --hooks {' '.join(hooks_in + hooks_out)} --out DIR`; "
            "layers must exist in the model)")
    return [Path(harvest) / h for h in hooks_in], [Path(harvest) / h for h in hooks_out]


class CLTStoreData:
    """(inputs, targets) batches of a CLT, the n sites concatenated; its `TrainData`. `d` and
    `d_out` are one site's widths; `norm_scales` / `target_norm_scales` one per layer
    (`norm_scale`, which checkpoints record, is the first input site's)."""

    def __init__(self, cfg: TrainConfig, part: tuple[int, int] = (0, 1)):
        assert cfg.store is not None and cfg.clt_layers is not None
        self.harvest = Path(cfg.store)
        self.layers = parse_layers(cfg.clt_layers)
        paths_in, paths_out = clt_store_paths(self.harvest, self.layers)
        self.sources = [StoreData(cfg, part, p) for p in paths_in]
        self.targets = [StoreData(cfg, part, p) for p in paths_out]
        for other in self.sources[1:] + self.targets:
            check_pair(self.sources[0], other)
        self.d = _one_width(self.sources, "MLP input")
        self.d_out = _one_width(self.targets, "MLP output")
        self.norm_scales = [s.norm_scale for s in self.sources]
        self.target_norm_scales = [t.norm_scale for t in self.targets]
        self.norm_scale = self.norm_scales[0]
        self.n_train_rows = self.sources[0].n_train_rows

    def train_batches(self, start_step: int) -> Iterator[tuple[Tensor, Tensor]]:
        return _side_by_side([s.train_batches(start_step) for s in self.sources],
                             [t.train_batches(start_step) for t in self.targets])

    def eval_batches(self, max_rows: int) -> Iterator[tuple[Tensor, Tensor]]:
        return _side_by_side([s.eval_batches(max_rows) for s in self.sources],
                             [t.eval_batches(max_rows) for t in self.targets])

    def metadata(self) -> dict[str, Any]:
        first = self.sources[0].metadata()
        hooks_in, hooks_out = clt_hooks(self.layers)
        return {**first, "hook": hooks_in[0], "store": str(self.harvest.resolve()),
                "clt_layers": list(self.layers), "hooks_in": hooks_in, "hooks_out": hooks_out,
                "norm_scales": self.norm_scales, "target_norm_scales": self.target_norm_scales,
                "d_out": self.d_out}


def _one_width(stores: list[StoreData], what: str) -> int:
    widths = {s.d for s in stores}
    if len(widths) != 1:
        raise UserError(f"the {what} stores have different widths {sorted(widths)}: a CLT "
                        "reads one model's layers of one width")
    return widths.pop()


def _side_by_side(inputs: list[Iterator[Tensor]], targets: list[Iterator[Tensor]]
                  ) -> Iterator[tuple[Tensor, Tensor]]:
    """Batch b of every input store concatenated, with batch b of every target store;
    closing it closes all the readers (their prefetch threads)."""
    n = len(inputs)
    try:
        for batches in zip(*inputs, *targets):
            yield torch.cat(batches[:n], dim=1), torch.cat(batches[n:], dim=1)
    finally:
        for it in (*inputs, *targets):
            close = getattr(it, "close", None)
            if close is not None:
                close()
