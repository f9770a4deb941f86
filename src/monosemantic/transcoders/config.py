"""`TranscoderSetConfig`: the options of `monosemantic transcoders` (OUT/transcoders_cfg.json).

One run per layer, `OUT/layer_LL/`, each an ordinary transcoder run (`monosemantic train
--hook-in blocks.L.hook_mlp_in --hook-out blocks.L.hook_mlp_out`) with the same options; the
training options are the sweep's `RunOptions` (the trainer's defaults)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monosemantic.config import dotted, to_dict
from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text
from monosemantic.sae import SAEConfig
from monosemantic.sae.factory import ARCHITECTURES, sae_class
from monosemantic.sweep.config import RunOptions, parse_features
from monosemantic.train.config import RESUME_SAFE_FIELDS, TrainConfig

SET_CFG = "transcoders_cfg.json"
"""The options of the last invocation, inside OUT."""
SET_FILE = "transcoders.json"
"""{"version": 1, "model": SPEC, "layers": {"6": "layer_06", ...}}: the set (paths relative
to OUT); what `monosemantic graph` reads."""
SET_EVAL = "transcoders_eval.json"
"""Per-layer table and the loss with every transcoder of the set spliced in at once."""


def hook_in(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_in"


def hook_out(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def layer_dir_name(layer: int) -> str:
    """The run folder of one layer, relative to OUT: `layer_06`."""
    return f"layer_{layer:02d}"


@dataclass
class TranscoderSetConfig:
    """Train one transcoder per layer (blocks.L.hook_mlp_in -> blocks.L.hook_mlp_out) as runs
    OUT/layer_LL/, evaluate each, and measure the loss with all of them spliced in at once."""

    out: Path = field(metadata={"positional": True})
    """Set folder: layer_LL/ run folders, transcoders.json, transcoders_eval.json."""
    store: Path
    """Harvest holding every chosen layer's hook_mlp_in and hook_mlp_out, e.g.
    `monosemantic harvest --hooks 'blocks.*.hook_mlp_in' 'blocks.*.hook_mlp_out' --out acts`."""
    layers: str = "all"
    """Layers to replace: `all`, a layer (6), a range (0-5) or a comma list (0-5,8)."""
    architecture: str = field(default="topk", metadata={"choices": ARCHITECTURES})
    """Architecture of every layer's transcoder."""
    n_features: str = "4k"
    """Features per transcoder. Binary suffixes: 2k = 2048, 16k = 16384; or a plain number."""
    k: int = 32
    """topk / batchtopk / matryoshka: active features per token."""
    l1_coefficient: float | None = None
    """relu only: sparsity coefficient λ (default: the trainer's, 5)."""
    l0_coefficient: float | None = None
    """jumprelu only: L0 penalty weight (default: the trainer's)."""
    skip: bool = False
    """Skip transcoders: add a linear skip term W_skip·x to each."""
    lr: float | None = None
    """Adam learning rate (default: the architecture's, see `monosemantic train --help`)."""
    steps: int | None = None
    """Optimizer steps per layer. Give this or --tokens; default: one pass over the rows."""
    tokens: int | None = None
    """Training tokens per layer (steps = ceil(tokens / batch size)); 10M-style suffixes."""
    train: RunOptions = field(default_factory=RunOptions, metadata={"short_flags": True})
    """Training options of every layer's run, also accepted without the `train.` prefix
    (--batch-size, --device, ...). --seed is the same for every layer."""
    eval_tokens: int = 0
    """Held-out rows (tokens) for each layer's variance explained and L0; 0 = all of them."""
    loss_contexts: int = 16
    """Fresh corpus contexts (never harvested) for the spliced-in losses, per layer alone and
    all layers at once (the same contexts); 0: no spliced loss (the model is not loaded)."""
    loss_batch_size: int = 2
    """Contexts per model forward for the spliced-in losses."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.store = Path(self.store)


def train_config(cfg: TranscoderSetConfig, layer: int) -> TrainConfig:
    """The `TrainConfig` of one layer's run."""
    options: dict[str, Any] = {"architecture": cfg.architecture,
                               "n_features": parse_features(cfg.n_features), "skip": cfg.skip}
    if sae_class(cfg.architecture).uses_k:
        options["k"] = cfg.k
    for name in ("l1_coefficient", "l0_coefficient"):
        if getattr(cfg, name) is not None:
            options[name] = getattr(cfg, name)
    # Absolute store: the runs' metadata then finds it from any working directory.
    return TrainConfig(out=Path(cfg.out) / layer_dir_name(layer),
                       store=Path(cfg.store).resolve(), hook_in=hook_in(layer),
                       hook_out=hook_out(layer), sae=SAEConfig(**options), lr=cfg.lr,
                       steps=cfg.steps, total_tokens=cfg.tokens, **to_dict(cfg.train))


FREE_FIELDS = frozenset({"out", "layers", "loss_batch_size",
                         *(f"train.{name}" for name in RESUME_SAFE_FIELDS)})
"""Options a later invocation may change: which layers, and how runs are made."""


def save_set_config(cfg: TranscoderSetConfig) -> None:
    """Write OUT/transcoders_cfg.json; a UserError when OUT holds a set made with other options
    (its finished layers would not be one recipe)."""
    path = Path(cfg.out) / SET_CFG
    new = to_dict(cfg)
    if path.is_file():
        old_flat, new_flat = dotted(json.loads(path.read_text())), dotted(new)
        for flat in (old_flat, new_flat):
            flat["store"] = str(Path(flat["store"]).resolve())
        keys = sorted((set(old_flat) | set(new_flat)) - FREE_FIELDS)
        diff = [f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in keys
                if old_flat.get(k) != new_flat.get(k)]
        if diff:
            raise UserError(f"{cfg.out} holds a transcoder set made with other options "
                            f"({', '.join(diff)}): pass its options again (--layers may "
                            "change), or choose a new folder")
    atomic_write_text(path, json.dumps(new, indent=2, sort_keys=True) + "\n")
