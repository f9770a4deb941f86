"""`TrainConfig`: every option of `monosemantic train`, its defaults and its validation.

The SAE's own options are one nested `SAEConfig` (`--sae.k`, also spelled `--k`). Fields left at
`None` are resolved from the data and the architecture once the data source is known
(`resolve`); the resolved values are what `RUN/cfg.json` records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from monosemantic.config import ConfigError, dotted, to_dict
from monosemantic.data.documents import CorpusConfig
from monosemantic.sae import SAEConfig, sae_class

# Options that may change between a crash and its resume without changing the run's result.
RESUME_SAFE_FIELDS = frozenset({
    "device", "log_every", "eval_every", "eval_max_rows", "checkpoint_every", "keep_checkpoints",
    "wandb_project", "tensorboard", "compile", "stream_batch_size", "dist_timeout",
    # Checkpoints are resharded on load (train/dcp.py): any layout resumes any other's.
    "parallel", "feature_ranks",
})


@dataclass
class TrainConfig:
    """Train a sparse autoencoder on stored or streamed activations."""

    out: Path = field(metadata={"positional": True})
    """Run directory: cfg.json, metrics.jsonl, checkpoints/ and the final sae/ go here. An
    existing run directory with a checkpoint is resumed."""

    # ---- data ----
    store: Path | None = None
    """Activation store directory (from `monosemantic harvest`). Give this, or --model and --hook
    to stream activations straight from the model."""
    model: str | None = None
    """Model to stream activations from (same specs as `harvest`: gemma-3-270m, a hub id, a local
    directory or a .gguf file). Only without --store."""
    hook: str | None = None
    """Hook point to stream from, e.g. blocks.6.hook_resid_post. Only without --store."""
    hook_in: str | None = None
    """Train a transcoder: the hook it reads, e.g. blocks.6.hook_mlp_in. With --hook-out and a
    --store that is a harvest of both hooks (one sub-directory per hook)."""
    hook_out: str | None = None
    """Train a transcoder: the hook it predicts, e.g. blocks.6.hook_mlp_out (with --hook-in)."""
    crosscoder: tuple[str, ...] = ()
    """Train a crosscoder (docs/crosscoders.md): one dictionary reading and reconstructing
    these hooks together, e.g. blocks.4.hook_resid_post blocks.6.hook_resid_post; --store is a
    harvest of all of them (one sub-directory per hook)."""
    stores: tuple[Path, ...] = ()
    """Train a crosscoder over these stores, one site each, e.g. the same hook of two models
    harvested over the same corpus with the same tokenizer (model diffing); their rows must
    be the same tokens. Instead of --store."""
    clt_layers: str | None = None
    """Train a cross-layer transcoder over these layers, e.g. 0-3 or 0,2,5 (docs/clt.md): each
    layer's features read blocks.L.hook_mlp_in and write to blocks.L'.hook_mlp_out of every
    listed L' >= L. --store must be a harvest of both hooks of every listed layer;
    --n-features is per layer."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """Streaming only: the text to run the model over."""
    ctx_len: int = 256
    """Streaming only: tokens per context."""
    stream_batch_size: int = 8
    """Streaming only: contexts per model forward."""
    stream_buffer_rows: int = 65536
    """Streaming only: rows mixed in a shuffle buffer (at least 2 x batch size)."""
    model_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Streaming only: dtype the model computes in."""
    norm_estimate_batches: int = 4
    """Streaming only: training batches used to estimate the normalization scale
    (E||s*x||^2 = d)."""
    holdout_fraction: float = 0.02
    """Fraction of rows held out for evaluation: the last rows of the store in corpus order
    (streaming: the first rows streamed)."""

    # ---- architecture ----
    sae: SAEConfig = field(default_factory=SAEConfig, metadata={"short_flags": True})
    """The SAE: architecture, dictionary size and sparsity recipe. Each option is also accepted
    without the `sae.` prefix (--architecture, --n-features, --k, ...); d_in is taken from the
    data."""

    # ---- optimisation ----
    lr: float | None = None
    """Adam learning rate. Default per architecture (`SAE.default_lr`): relu 5e-5 (the paper),
    jumprelu 7e-5, topk/batchtopk/matryoshka 2e-4 / sqrt(n_features / 2^14) (Gao et al.)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam (beta1, beta2). No weight decay is applied."""
    batch_size: int = 4096
    """Activations (tokens) per optimizer step."""
    steps: int | None = None
    """Optimizer steps. Give this or --total-tokens; default: one pass over the training rows."""
    total_tokens: int | None = None
    """Training tokens (steps = ceil(total_tokens / batch_size)); accepts 10M-style suffixes."""
    l1_warmup_fraction: float = 0.05
    """Sparsity coefficient warmed up linearly from 0 over this fraction of the steps."""
    lr_warmup_fraction: float = 0.0
    """Learning rate warmed up linearly from 0 over this fraction of the steps."""
    lr_decay_fraction: float = 0.2
    """Learning rate decayed linearly to 0 over this last fraction of the steps."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""

    # ---- feature health ----
    dead_window_tokens: int | None = None
    """A feature is dead if it did not fire in the last N tokens. Default: min(10M, a fifth of the
    run), at least one batch (the paper uses 10^7)."""
    dense_threshold: float = 0.1
    """A feature is dense if it fires on more than this fraction of tokens (per logging window)."""

    # ---- evaluation, checkpoints, logging ----
    eval_every: int = 1000
    """Evaluate on the held-out rows every N steps (0: only at the end)."""
    eval_max_rows: int = 65536
    """At most this many held-out rows per evaluation."""
    checkpoint_every: int = 1000
    """Write a checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """Number of most recent checkpoints kept."""
    log_every: int = 100
    """Write metrics.jsonl (and read metrics back from the device) every N steps."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs `pip install wandb`)."""
    tensorboard: bool = False
    """Also log to RUN/tensorboard (needs `pip install tensorboard`)."""

    # ---- runtime ----
    seed: int = 0
    """Seed for initialization and the data order."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    autocast: Literal["auto", "bfloat16", "float32"] = "auto"
    """Autocast dtype for the forward pass: auto = bfloat16 on GPU, float32 (off) on CPU. Weights
    and optimizer state stay float32. (float16 is not offered: it would need loss scaling.)"""
    compile: bool = False
    """Compile the SAE forward with torch.compile."""
    dist_timeout: float = 600.0
    """Under torchrun: seconds a rank waits for the others (to join, and in each collective)
    before it stops with an error instead of hanging. While rank 0 alone evaluates or writes a
    checkpoint the others wait in their next collective, so keep it above the longest of those
    (600 s covers a multi-GB checkpoint on a slow shared disk)."""
    parallel: Literal["data", "features"] = "data"
    """Under torchrun: data = every rank holds the whole SAE and trains on its slice of each
    batch; features = every rank holds n_features / world of the features and all read the
    same batches (for a dictionary too large for one device; the world size must divide
    n_features). Without torchrun there is one process either way."""
    feature_ranks: int = 0
    """With --parallel features: ranks per feature group. Fewer than all ranks make a data x
    features grid: world size / feature_ranks groups, each training on its own slice of every
    batch as data-parallel ranks do. 0 = all ranks in one feature group."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.store is not None:
            self.store = Path(self.store)
        self.crosscoder = tuple(self.crosscoder)
        self.stores = tuple(Path(p) for p in self.stores)
        # The CLI and JSON give a list; `validate` reports a length other than two.
        self.adam_betas = cast("tuple[float, float]", tuple(self.adam_betas))


def validate(cfg: TrainConfig) -> None:
    """Reject option values that cannot work, before any data is read."""
    if cfg.store is None and not cfg.stores and (cfg.model is None or cfg.hook is None):
        raise ConfigError("give --store DIR (stored activations), or --model and --hook to stream")
    if cfg.store is not None and cfg.model is not None:
        raise ConfigError("give either --store or --model/--hook, not both (a store already "
                          "records its model and hook)")
    _validate_transcoder(cfg)
    _validate_crosscoder(cfg)
    _validate_clt(cfg)
    cfg.sae.validate()
    _positive(cfg, "batch_size")
    if cfg.steps is not None and cfg.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.total_tokens is not None and cfg.total_tokens < 1:
        raise ConfigError(f"--total-tokens must be >= 1, got {cfg.total_tokens}")
    if cfg.steps is not None and cfg.total_tokens is not None:
        raise ConfigError("give --steps or --total-tokens, not both")
    if cfg.lr is not None and not cfg.lr > 0:
        raise ConfigError(f"--lr must be > 0, got {cfg.lr}")
    if len(cfg.adam_betas) != 2 or not all(0 <= b < 1 for b in cfg.adam_betas):
        raise ConfigError(f"--adam-betas takes two values in [0, 1), got {list(cfg.adam_betas)}")
    for name in ("l1_warmup_fraction", "lr_warmup_fraction", "lr_decay_fraction"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(f"--{_flag(name)} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.lr_warmup_fraction + cfg.lr_decay_fraction > 1:
        raise ConfigError("--lr-warmup-fraction + --lr-decay-fraction must be <= 1")
    if not 0 <= cfg.holdout_fraction < 1:
        raise ConfigError(f"--holdout-fraction must be in [0, 1), got {cfg.holdout_fraction}")
    if not 0 < cfg.dense_threshold <= 1:
        raise ConfigError(f"--dense-threshold must be in (0, 1], got {cfg.dense_threshold}")
    if cfg.grad_clip < 0:
        raise ConfigError(f"--grad-clip must be >= 0 (0 disables), got {cfg.grad_clip}")
    if cfg.dead_window_tokens is not None and cfg.dead_window_tokens < 1:
        raise ConfigError(f"--dead-window-tokens must be >= 1, got {cfg.dead_window_tokens}")
    if not cfg.dist_timeout > 0:
        raise ConfigError(f"--dist-timeout must be > 0 seconds, got {cfg.dist_timeout}")
    if cfg.feature_ranks < 0:
        raise ConfigError(f"--feature-ranks must be >= 0 (0: all ranks), got {cfg.feature_ranks}")
    _positive(cfg, "log_every", "keep_checkpoints", "eval_max_rows", "ctx_len",
              "stream_batch_size", "norm_estimate_batches")
    if cfg.store is None and not cfg.stores and cfg.stream_buffer_rows < 2 * cfg.batch_size:
        raise ConfigError(f"--stream-buffer-rows must be at least 2 x --batch-size "
                          f"({2 * cfg.batch_size}), got {cfg.stream_buffer_rows}")
    for name in ("eval_every", "checkpoint_every"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{_flag(name)} must be >= 0 (0: only at the end)")


def _validate_transcoder(cfg: TrainConfig) -> None:
    if (cfg.hook_in is None) != (cfg.hook_out is None):
        raise ConfigError("a transcoder needs both --hook-in and --hook-out")
    if cfg.hook_in is None:
        if cfg.sae.skip:
            raise ConfigError("--skip is a transcoder's option: give --hook-in and --hook-out")
        return
    if cfg.store is None:
        raise ConfigError("transcoders train from stored activations only: give --store, a "
                          "harvest of both hooks (streaming is not implemented for them)")
    if cfg.hook_in == cfg.hook_out:
        raise ConfigError(f"--hook-in and --hook-out are both {cfg.hook_in}: a transcoder maps "
                          "one site to another (for an SAE, leave both out)")


def _validate_crosscoder(cfg: TrainConfig) -> None:
    if not cfg.crosscoder and not cfg.stores:
        return
    if cfg.crosscoder and cfg.stores:
        raise ConfigError("give --crosscoder HOOK... with --store HARVEST, or --stores A B, "
                          "not both")
    if cfg.hook_in is not None:
        raise ConfigError("--crosscoder/--stores and --hook-in/--hook-out do not combine "
                          "(transcoder crosscoders are not implemented)")
    if cfg.crosscoder and cfg.store is None:
        raise ConfigError("--crosscoder needs --store, a harvest of all its hooks")
    if cfg.stores and (cfg.store is not None or cfg.model is not None):
        raise ConfigError("--stores names every site's store: leave out --store and --model")
    sites = cfg.crosscoder or tuple(str(p) for p in cfg.stores)
    if len(sites) < 2:
        raise ConfigError(f"a crosscoder needs at least two sites, got {list(sites)}")
    if len(set(sites)) != len(sites):
        raise ConfigError(f"a crosscoder's sites must differ, got {list(sites)}")
def _validate_clt(cfg: TrainConfig) -> None:
    if cfg.clt_layers is None:
        return
    from monosemantic.sae.clt import clt_config, parse_layers

    parse_layers(cfg.clt_layers)
    if cfg.crosscoder or cfg.stores:
        raise ConfigError("--clt-layers and --crosscoder/--stores do not combine: a CLT's "
                          "sites are every listed layer's hook_mlp_in and hook_mlp_out")
    if cfg.hook_in is not None or cfg.hook_out is not None:
        raise ConfigError("--clt-layers names the CLT's hooks (blocks.L.hook_mlp_in -> "
                          "blocks.L'.hook_mlp_out): leave --hook-in and --hook-out out")
    if cfg.store is None:
        raise ConfigError("cross-layer transcoders train from stored activations only: give "
                          "--store, a harvest of every listed layer's hook_mlp_in and "
                          "hook_mlp_out (streaming is not implemented for them)")
    clt_config(dataclasses.replace(cfg.sae, d_in=cfg.sae.d_in or 1))  # architecture, skip


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{_flag(name)} must be >= 1, got {getattr(cfg, name)}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def resolve(cfg: TrainConfig, n_train_rows: int | None, d_in: int | None = None,
            d_out: int | None = None, site_widths: tuple[int, ...] = ()) -> TrainConfig:
    """Fill the fields that depend on the data (steps, lr, dead window, the SAE's d_in and a
    transcoder's d_out) in place; `d_in` is the data's width (None: not known yet), `d_out`
    the target site's width of a transcoder's data, `site_widths` a crosscoder's sites'. A
    transcoder never subtracts b_dec from its input (b_dec lives at the output site):
    `apply_b_dec_to_input` is set false."""
    if cfg.total_tokens is not None:
        cfg.steps = math.ceil(cfg.total_tokens / cfg.batch_size)
        cfg.total_tokens = None
    if cfg.steps is None:
        if n_train_rows is None:
            raise ConfigError("streaming needs a length: give --steps or --total-tokens")
        if n_train_rows < cfg.batch_size:
            raise ConfigError(f"only {n_train_rows} training rows, fewer than one batch of "
                              f"{cfg.batch_size}: lower --batch-size or harvest more tokens")
        cfg.steps = n_train_rows // cfg.batch_size
    if d_in is not None:
        if cfg.sae.d_in is not None and cfg.sae.d_in != d_in:
            raise ConfigError(f"sae.d_in = {cfg.sae.d_in} but the data has width {d_in}: leave "
                              "sae.d_in unset (the trainer takes it from the data)")
        cfg.sae.d_in = d_in
    if site_widths:
        cfg.sae.site_widths = tuple(site_widths)
    if d_out is not None:
        cfg.sae.d_out = d_out
        cfg.sae.apply_b_dec_to_input = False
    if cfg.lr is None:
        cfg.lr = sae_class(cfg.sae.architecture).default_lr(cfg.sae)
    if cfg.dead_window_tokens is None:
        run_tokens = cfg.steps * cfg.batch_size
        cfg.dead_window_tokens = max(cfg.batch_size, min(10_000_000, run_tokens // 5))
    return cfg


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields (of two `to_dict` configs) that differ in a way that changes the run's result,
    nested ones by dotted name (`sae.k`). `old` may have the layout of earlier versions.

    `sae.d_in` is left out: it comes from the data, whose width the checkpoint checks with a
    message that names the store to use; `sae.b_dec_init` too: it acts before the first step
    only, and a checkpoint holds what it did."""
    old, new = dotted(current_layout(old)), dotted(new)
    keys = {k for k in set(old) | set(new) if k.split(".")[0] not in RESUME_SAFE_FIELDS}
    keys -= {"out", "sae.d_in", "sae.d_out", "sae.site_widths", "sae.b_dec_init"}
    return {k: (old.get(k), new.get(k)) for k in sorted(keys) if old.get(k) != new.get(k)}



def current_layout(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved TrainConfig dict in the current layout: earlier versions kept the SAE's options
    at the top level, with None for "the SAE's default", and lacked SAE options added since
    (e.g. `matryoshka_prefixes`), which take their defaults: what those runs trained with."""
    if "sae" in saved:
        defaults = to_dict(SAEConfig())
        return {**saved, "sae": {**defaults, **saved["sae"]}}
    names = {f.name for f in dataclasses.fields(SAEConfig)}
    rest = {k: v for k, v in saved.items() if k not in names}
    options = {k: v for k, v in saved.items() if k in names and v is not None}
    return {**rest, "sae": to_dict(SAEConfig(**options))}
