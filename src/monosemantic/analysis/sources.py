"""The rows `analyze` reads: the run's activation store, or fresh text run through the model.

Either source gives `make_batches` for `onepass.analyze_batches`: every call returns a new
iterator over the same `RowBatch`es (acts_ND, tokens_N, doc_ids_N, positions_N) in corpus order,
because the passes read the rows twice and pass 2 relies on pass 1's maxima. Both give *raw*
activations: the saved SAE has the store's normalisation scale folded in
(`sae.io.fold_for_inference`), so multiplying by `norm_scale` here would scale every code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from monosemantic.activations.harvest import TORCH_DTYPES, HarvestConfig
from monosemantic.activations.manifest import MANIFEST, read_manifest
from monosemantic.activations.model_rows import RowsBatch, context_batches, model_rows
from monosemantic.activations.reader import ActivationStore, RowBatch
from monosemantic.config import to_dict
from monosemantic.data import CorpusConfig
from monosemantic.errors import UserError

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

_HARVEST_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(HarvestConfig)}


@dataclass
class RowSource:
    """Rows to analyse, and what to record about them."""

    make_batches: Callable[[], Iterator[RowBatch]]
    """A new iterator over the same batches in the same order on every call."""
    first_row: int
    """Global row index of the first row (the store row; 0 for text)."""
    max_rows: int | None
    """Rows one pass reads at most (the progress total); None when only the end tells."""
    meta: dict[str, Any]
    """What was analysed, for the feature database's meta."""


# ----- the activation store ---------------------------------------------------------------------

def store_rows(store: ActivationStore, which: str, holdout_rows: range | None, n_tokens: int,
               batch_size: int) -> RowSource:
    """Rows `which` (all / holdout / train) of `store` (the run's, checked by
    `RunDir.store`), the first `n_tokens` of them when > 0."""
    rows = row_range(which, holdout_rows, store.n_rows, n_tokens)
    # normalize=False: raw rows, as the folded SAE expects (module docstring).
    return RowSource(lambda: store.iter_rows(batch_size, rows=rows, normalize=False),
                     first_row=rows.start, max_rows=len(rows), meta={"store": str(store.path)})


def row_range(which: str, holdout_rows: range | None, n_rows: int, n_tokens: int) -> range:
    """The store rows to analyse; `holdout_rows` are the run's held-out rows (None: none)."""
    start, stop = ((holdout_rows.start, holdout_rows.stop) if holdout_rows is not None
                   else (n_rows, n_rows))
    if which == "holdout":
        rows = range(start, stop)
    elif which == "train":
        rows = range(start)
    else:
        rows = range(n_rows)
    if n_tokens > 0:
        rows = range(rows.start, min(rows.stop, rows.start + n_tokens))
    if len(rows) == 0:
        raise UserError(f"no {which} rows to analyse in the store; try --rows all")
    return rows


# ----- fresh text through the model -------------------------------------------------------------

@dataclass(frozen=True)
class TextSettings:
    """How text becomes rows; taken from the harvest that made the SAE's rows when known, so
    that the same text gives the same rows (a context's activations depend on its packing)."""

    ctx_len: int = _HARVEST_DEFAULTS["ctx_len"]
    exclude_special: bool = _HARVEST_DEFAULTS["exclude_special"]
    model_dtype: str = _HARVEST_DEFAULTS["model_dtype"]
    contexts_per_forward: int = _HARVEST_DEFAULTS["batch_size"]
    """Batch shapes change float rounding a little; the harvest's gives bit-equal rows."""
    taken_from: str = "harvest defaults"

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.model_dtype]


def text_settings(extra: dict[str, Any], store_path: str | Path | None) -> TextSettings:
    """The settings of the store's harvest if its manifest is readable, else those of the run's
    streamed training, else harvest's defaults (the store may be gone: only text is needed)."""
    defaults = TextSettings()
    if store_path is not None and (Path(store_path) / MANIFEST).is_file():
        manifest = read_manifest(Path(store_path))
        return TextSettings(
            ctx_len=int(manifest["ctx_len"]), exclude_special=bool(manifest["exclude_special"]),
            model_dtype=str(manifest.get("model_dtype", defaults.model_dtype)),
            contexts_per_forward=int(manifest.get("batch_size", defaults.contexts_per_forward)),
            taken_from=f"store {store_path}")
    train = extra.get("train_config") or {}
    if extra.get("store") is None and train.get("ctx_len"):
        # Streaming training always leaves special tokens out (stream_activations' default).
        return TextSettings(
            ctx_len=int(train["ctx_len"]), exclude_special=True,
            model_dtype=str(train.get("model_dtype", defaults.model_dtype)),
            contexts_per_forward=int(train.get("stream_batch_size",
                                               defaults.contexts_per_forward)),
            taken_from="the run's streamed training")
    return defaults


def text_rows(lm: LoadedModel, corpus: CorpusConfig, hook: str, d_in: int,
              settings: TextSettings, n_tokens: int, batch_size: int,
              device: torch.device | str | None = None) -> RowSource:
    """The rows of `corpus` at `hook` (the first `n_tokens` when > 0) as float32 on `device`
    (default: the model's), computed by `lm` anew on every `make_batches()` call:
    deterministic, and never more than about two batches held."""
    if batch_size <= 0:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else lm.device
    width = lm.hook_point(hook).width
    if width != d_in:
        raise UserError(f"{lm.spec} has width {width} at {hook}; the SAE reads width {d_in}: "
                        "give the SAE's model with --model")
    meta = {"text": corpus.describe(), "text_config": to_dict(corpus),
            "text_settings": dataclasses.asdict(settings)}
    return RowSource(lambda: _text_batches(lm, corpus, hook, settings, n_tokens, batch_size,
                                           device),
                     first_row=0, max_rows=n_tokens if n_tokens > 0 else None, meta=meta)


def _text_batches(lm: LoadedModel, corpus: CorpusConfig, hook: str, settings: TextSettings,
                  n_tokens: int, batch_size: int, device: torch.device) -> Iterator[RowBatch]:
    """Kept rows re-batched, in corpus order, into batches of `batch_size` rows. Only the last
    may be short: a token window reaches into the neighbouring batches only (`onepass.spans`),
    so those must hold a window's rows."""
    contexts = context_batches(lm, corpus, settings.ctx_len, settings.contexts_per_forward)
    # model_rows is a generator function (its annotation says Iterator): `close` below stops
    # its tokenizer thread.
    forwards = cast(Generator[RowsBatch, None, None],
                    model_rows(lm, contexts, [hook], settings.exclude_special))
    pending: list[RowBatch] = []
    held = taken = 0
    try:
        for rows in forwards:
            take = rows.n_rows if n_tokens <= 0 else min(rows.n_rows, n_tokens - taken)
            if take > 0:
                pending.append(_row_batch(rows, hook, take, device))
                held, taken = held + take, taken + take
            while held >= batch_size:
                batch, rest = _split(_joined(pending), batch_size)
                pending, held = [rest], held - batch_size
                yield batch
            if 0 < n_tokens <= taken:
                break  # as harvest stops: the rest of the corpus is never run
    finally:
        forwards.close()  # stops model_rows' tokenizer thread when we stop early
    if held:
        yield _joined(pending)
    if taken == 0:
        raise UserError(f"the text {corpus.describe()} gave no tokens to analyse (every token "
                        "was a special token?)")


def _row_batch(rows: RowsBatch, hook: str, take: int, device: torch.device) -> RowBatch:
    """The first `take` kept rows of one forward, activations float32 on `device` (token ids
    and positions stay on the CPU, as the store's)."""
    # None only for the batches model_rows skips before its `start_batch` (0 here).
    assert rows.acts is not None
    return RowBatch(rows.acts[hook][:take].to(device, torch.float32), rows.tokens_N[:take].long(),
                    rows.doc_ids_N[:take].long(), rows.positions_N[:take].long())


def _joined(parts: list[RowBatch]) -> RowBatch:
    if len(parts) == 1:
        return parts[0]
    return RowBatch(*(torch.cat(column) for column in zip(*parts)))


def _split(batch: RowBatch, n: int) -> tuple[RowBatch, RowBatch]:
    """(first `n` rows, the rest), views: the next `_joined` copies the rest out."""
    return RowBatch(*(t[:n] for t in batch)), RowBatch(*(t[n:] for t in batch))
