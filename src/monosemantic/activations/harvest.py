"""`monosemantic harvest`: run a model over a corpus and store activations at hook points.

Output: with one hook, `out` itself is the store; with several, `out/<hook name>/` holds one
store per hook (all with the same rows, in the same order). Running the same command again on
an unfinished `out` resumes it: batches already stored are tokenized but not run, and the run
ends with exactly the rows an uninterrupted one would have written (same batches through the
model, so the same bits). Resuming with other options is refused, listing what differs.

Under torchrun (`torchrun --nproc-per-node N -m monosemantic harvest ...`) the ranks share the
forward passes and write the same store, file for file (`harvest_ranks`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from monosemantic.activations.manifest import MANIFEST, StoreError
from monosemantic.activations.model_rows import context_batches, model_rows, special_token_ids
from monosemantic.activations.writer import StoreWriter
from monosemantic.config import to_dict
from monosemantic.console import redirected, say
from monosemantic.data import CorpusConfig, CorpusReport
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.models.hook_points import expand_hook_patterns, is_hook_pattern
from monosemantic.progress import progress

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class HarvestConfig:
    """Run a model over a corpus and store its activations at one or more hook points."""

    out: Path
    """Store directory (with several hooks: one sub-directory per hook). An unfinished store
    there is resumed."""
    model: str = "gemma-3-270m"
    """Model: `gemma-3-270m` (embedded default), a local HF directory, a .gguf file or a hub id."""
    hooks: tuple[str, ...] = ("blocks.6.hook_resid_post",)
    """Hook point(s) to store, e.g. `blocks.6.hook_resid_post` (`monosemantic hooks` lists
    them); several are harvested in one pass (`--hook` works for one). Patterns stand for
    several: `'blocks.*.hook_mlp_in'` (every layer; quote it for the shell),
    `blocks.0-5.hook_mlp_out`, `blocks.2,4.hook_mlp_in`."""
    tokens: int = 2_000_000
    """Rows (token positions) to store per hook, e.g. 2M; fewer if the corpus runs out."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """Text to run the model over."""
    ctx_len: int = 256
    """Tokens per context (each starts with BOS)."""
    batch_size: int = 8
    """Contexts per forward pass."""
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    """Storage dtype of the activations."""
    shard_rows: int = 65536
    """Rows per shard file (the writer holds one shard in memory per hook)."""
    device: str = "auto"
    """Device for the model: `auto` (cuda if available, else cpu), `cpu`, `cuda`, `cuda:1`, ..."""
    model_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the model computes in."""
    exclude_special: bool = True
    """Leave out BOS and other special tokens (their norms dwarf the rest); padding is never
    stored."""


def store_dirs(cfg: HarvestConfig) -> dict[str, Path]:
    """Hook name -> its store directory (`out` for one hook, `out/<hook>` for several)."""
    if not cfg.hooks:
        raise UserError("no hook point given; pass e.g. --hook blocks.6.hook_resid_post")
    if len(set(cfg.hooks)) != len(cfg.hooks):
        raise UserError(f"hook points repeat in {list(cfg.hooks)}; give each once")
    if len(cfg.hooks) == 1:
        return {cfg.hooks[0]: Path(cfg.out)}
    bad = [h for h in cfg.hooks if "/" in h or h in (".", "..")]
    if bad:
        raise UserError(f"hook names {bad} cannot name a directory")
    if (Path(cfg.out) / MANIFEST).exists():
        raise UserError(f"{cfg.out} is a single-hook store; harvest several hooks into a new "
                        f"--out directory")
    return {hook: Path(cfg.out) / hook for hook in cfg.hooks}


def with_hooks_expanded(cfg: HarvestConfig, n_layers: int) -> HarvestConfig:
    """`cfg` with its hook patterns (`blocks.*.hook_mlp_in`, `blocks.0-5.hook_mlp_out`)
    replaced by the hook points they match (`models.hook_points.expand_hook_patterns`)."""
    if not any(is_hook_pattern(h) for h in cfg.hooks):
        return cfg
    hooks = tuple(expand_hook_patterns(cfg.hooks, n_layers))
    say(f"hooks: {len(hooks)} hook points from {' '.join(cfg.hooks)}")
    return replace(cfg, hooks=hooks)


def _check(cfg: HarvestConfig) -> None:
    for name in ("tokens", "ctx_len", "batch_size", "shard_rows"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"{name} must be positive, got {getattr(cfg, name)}")


def harvest(cfg: HarvestConfig) -> Path:
    """Harvest (or resume) and return the store directory (`out`; with several hooks, `out` is
    the parent of the per-hook stores). Prints the corpus report at the end.

    Under torchrun the ranks share the forward passes and write the same store
    (`harvest_ranks`); rank 0 alone prints."""
    from monosemantic.distributed import process_group
    from monosemantic.models import load_model

    _check(cfg)
    if any(is_hook_pattern(h) for h in cfg.hooks):
        from monosemantic.models import load_model_layout

        cfg = with_hooks_expanded(cfg, load_model_layout(cfg.model).n_layers)
    store_dirs(cfg)
    with process_group(resolve_device(cfg.device)) as (ranks, device):
        if ranks.active:
            from monosemantic.activations.harvest_ranks import harvest_ranks

            with contextlib.nullcontext() if ranks.is_main else redirected(None):
                harvest_ranks(cfg, ranks, device)
            return Path(cfg.out)
        lm = load_model(cfg.model, device=str(device), dtype=TORCH_DTYPES[cfg.model_dtype])
        harvest_with(lm, cfg)
    return Path(cfg.out)


def harvest_with(lm: LoadedModel, cfg: HarvestConfig) -> int:
    """`harvest` with the model already loaded (`cfg.model` is recorded, not loaded); returns
    the rows stored per hook."""
    _check(cfg)
    cfg = with_hooks_expanded(cfg, lm.n_layers)
    writers = {hook: StoreWriter(path, header(cfg, lm, hook), lm.hook_point(hook).width,
                                 cfg.dtype, cfg.shard_rows)
               for hook, path in store_dirs(cfg).items()}
    if all(w.complete for w in writers.values()):
        rows = next(iter(writers.values())).rows
        say(f"{cfg.out}: already complete ({rows:,} rows per hook)")
        return rows
    report = CorpusReport()
    # A crash between two hooks' final commits can leave some stores complete: skip those.
    stored = _run(cfg, lm, {h: w for h, w in writers.items() if not w.complete}, report)
    for writer in writers.values():
        writer.finish()
    say(report.summary())
    short = f" (the corpus ran out; asked for {cfg.tokens:,})" if stored < cfg.tokens else ""
    say(f"stored {stored:,} rows{short} per hook in {cfg.out}: "
        + ", ".join(f"{h} ({w.d}, {w.dtype})" for h, w in writers.items()))
    return stored


def header(cfg: HarvestConfig, lm: LoadedModel, hook: str) -> dict:
    """What identifies a harvest: resuming requires all of it to be the same."""
    point = lm.hook_point(hook)
    return {
        "model": cfg.model,
        "model_family": lm.family,
        "model_dtype": cfg.model_dtype,
        "hook": point.name,
        "hook_module": point.module_path,
        "ctx_len": cfg.ctx_len,
        "batch_size": cfg.batch_size,
        "tokens_target": cfg.tokens,
        "exclude_special": cfg.exclude_special,
        "special_token_ids": special_token_ids(lm.tokenizer) if cfg.exclude_special else [],
        "corpus": {"description": cfg.corpus.describe(), "config": to_dict(cfg.corpus)},
    }


def _run(cfg: HarvestConfig, lm: LoadedModel, writers: dict[str, StoreWriter],
         report: CorpusReport) -> int:
    """Feed batches to every writer until `cfg.tokens` rows; returns the rows reached."""
    behind = min(writers.values(), key=lambda w: w.rows)
    start_batch, start_row = behind.resume
    batches = context_batches(lm, cfg.corpus, cfg.ctx_len, cfg.batch_size, report)
    row, already = 0, behind.rows
    bar = progress(total=cfg.tokens, desc="harvest", unit="tok", initial=already)
    try:
        for rows in model_rows(lm, batches, list(writers), cfg.exclude_special, start_batch):
            if rows.index < start_batch:
                row += rows.n_rows
                continue
            if rows.index == start_batch and row != start_row:
                raise StoreError(
                    f"cannot resume {cfg.out}: batch {start_batch} now starts at row {row:,}, "
                    f"the store says {start_row:,}; the corpus or tokenizer changed since the "
                    f"harvest began. Restore them or harvest into a new --out directory")
            take = min(rows.n_rows, cfg.tokens - row)
            assert rows.acts is not None  # model_rows runs the model from start_batch on
            for hook, writer in writers.items():
                writer.append(rows.acts[hook][:take], rows.tokens_N[:take], rows.doc_ids_N[:take],
                              rows.positions_N[:take], batch=rows.index, first_row=row)
            bar.update(max(0, row + take - max(row, already)))
            row += take
            if row >= cfg.tokens:
                break
    finally:
        bar.close()
    return row
