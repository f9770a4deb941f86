"""The MLP neurons beside an SAE's hook, and store rows computed again with more hooks.

Which MLP an SAE's hook is compared with (the last MLP whose output the hooked activation has
seen, or the MLP it is part of):
- `resid_post` L, `mlp_out` L, `mlp_post` L: the MLP of layer L;
- `resid_pre` L, `attn_out` L: the MLP of layer L − 1 (layer L's attention runs before its
  MLP); refused at layer 0, where no MLP precedes.
Raw module hooks are refused unless the layer is given.

A store holds one hook's activations; the neurons are recomputed by running the model again
over the store's corpus, packed and batched as the harvest did (`analysis.sources.TextSettings`
from its manifest), so row i of the replay is row i of the store. Batches before the wanted
rows are tokenized only. The replayed tokens are checked against the store's: a corpus that
changed since the harvest is refused instead of giving other tokens' activations.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from torch import Tensor

from monosemantic.activations.model_rows import RowsBatch, context_batches, model_rows
from monosemantic.activations.reader import ActivationStore
from monosemantic.analysis.sources import TextSettings
from monosemantic.config import from_dict
from monosemantic.data import CorpusConfig
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel

MLP_OF_KIND = {"resid_post": 0, "mlp_out": 0, "mlp_post": 0, "resid_pre": -1, "attn_out": -1}
"""Hook kind -> offset of the compared MLP's layer from the hook's layer."""


def mlp_hook_for(lm: LoadedModel, hook: str, layer: int | None = None) -> str:
    """`blocks.{L}.mlp.hook_post` of the MLP an SAE at `hook` is compared with (module
    docstring), or of `layer` when given."""
    if layer is None:
        point = lm.hook_point(hook)
        if point.kind not in MLP_OF_KIND or point.layer < 0:
            raise UserError(f"{hook} is not a blocks.L hook point: give the MLP layer to "
                            "compare with (--mlp-layer)")
        layer = point.layer + MLP_OF_KIND[point.kind]
        if layer < 0:
            raise UserError(f"{hook} reads the residual stream before any MLP has run: there "
                            "are no earlier neurons to compare its features with (--mlp-layer "
                            "picks a layer anyway)")
    if not 0 <= layer < lm.n_layers:
        raise UserError(f"--mlp-layer {layer}: {lm.spec} has layers 0..{lm.n_layers - 1}")
    return f"blocks.{layer}.mlp.hook_post"


@dataclass
class ReplayBatch:
    """Consecutive store rows, recomputed: activations per hook (float32) and the tokens."""

    first_row: int
    acts: dict[str, Tensor]
    tokens_N: Tensor


def store_corpus(store: ActivationStore) -> CorpusConfig:
    """The corpus the store was harvested from (its manifest's)."""
    corpus = (store.manifest.get("corpus") or {}).get("config")
    if not corpus:
        raise UserError(f"store {store.path} records no corpus (not written by `harvest`?): "
                        "its rows cannot be computed again with the MLP neurons")
    return from_dict(CorpusConfig, dict(corpus))


def replay_settings(store: ActivationStore) -> TextSettings:
    """How the store's harvest packed and batched its contexts."""
    m = store.manifest
    return TextSettings(ctx_len=int(m["ctx_len"]), exclude_special=bool(m["exclude_special"]),
                        model_dtype=str(m.get("model_dtype", "float32")),
                        contexts_per_forward=int(m.get("batch_size", 8)),
                        taken_from=f"store {store.path}")


def replay_rows(lm: LoadedModel, store: ActivationStore, rows: range, hooks: Sequence[str],
                corpus: CorpusConfig | None = None) -> Iterator[ReplayBatch]:
    """The store's rows `rows` at `hooks`, computed again by `lm` (loaded in the harvest's
    model dtype for the same values), one forward's rows at a time."""
    corpus = store_corpus(store) if corpus is None else corpus
    settings = replay_settings(store)
    contexts = context_batches(lm, corpus, settings.ctx_len, settings.contexts_per_forward)

    def wanted(first: int, n: int) -> bool:
        return first < rows.stop and first + n > rows.start

    forwards = cast(Generator[RowsBatch, None, None],
                    model_rows(lm, contexts, list(hooks), settings.exclude_special,
                               run_rows=wanted))
    row = 0
    try:
        for batch in forwards:
            first, row = row, row + batch.n_rows
            if batch.acts is None:
                if first >= rows.stop:
                    break
                continue
            lo, hi = max(rows.start, first) - first, min(rows.stop, row) - first
            tokens_N = batch.tokens_N[lo:hi].long()
            _check_tokens(store, first + lo, tokens_N)
            yield ReplayBatch(first + lo, {h: a[lo:hi].float() for h, a in batch.acts.items()},
                              tokens_N)
            if row >= rows.stop:
                break
    finally:
        forwards.close()  # stops model_rows' tokenizer thread
    if row < rows.stop:
        raise UserError(f"the corpus gave {row:,} rows, the store has rows up to "
                        f"{rows.stop:,}: the corpus changed since the harvest")


def _check_tokens(store: ActivationStore, first: int, tokens_N: Tensor) -> None:
    stored_N = store.take(np.arange(first, first + len(tokens_N))).tokens_N
    same = stored_N == tokens_N
    if not bool(same.all()):
        at = first + int((~same).nonzero()[0])
        raise UserError(f"the store's corpus no longer gives its tokens (row {at:,} differs): "
                        "the files changed since the harvest; harvest a new store")
