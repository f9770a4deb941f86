"""The MLP neurons beside an SAE's hook, and store rows computed again with more hooks.

Which MLP an SAE's hook is compared with (the last MLP whose output the hooked activation has
seen, or the MLP it is part of):
- `resid_post` L, `mlp_out` L, `mlp_post` L: the MLP of layer L;
- `resid_pre` L, `attn_out` L: the MLP of layer L − 1 (layer L's attention runs before its
  MLP); refused at layer 0, where no MLP precedes.
Raw module hooks are refused unless the layer is given.

A store holds one hook's activations; the neurons are recomputed by running the model again
over the store's own tokens, packed into contexts as the harvest packed them (the rule in
`data.packing`: each document is [BOS, its text tokens], laid end to end, cut every `ctx_len`
tokens, a BOS inserted where a cut falls inside a document) and batched as the harvest did. The
store's rows from 0 give the documents' text tokens with their positions, so the contexts
come out as the harvest's without the corpus files. A special token inside a text (not stored)
shows as a gap in its document's positions and is replaced by a BOS (counted: the rows after it
in its context see another token than at the harvest). The replayed activations at the store's
hook are compared with the stored ones (`ReplayCheck`), so a replay that does not reproduce the
store is seen, not silently measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from monosemantic.activations.reader import ActivationStore
from monosemantic.analysis.sources import TextSettings
from monosemantic.data.packing import bos_token_id
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel, capture

BOS_ROW, PLACEHOLDER_ROW = -1, -2
"""Row index of a stream token that is no store row: a BOS (a document's own, inserted, or
padding), or a special token of a text replaced by a BOS."""
READ_ROWS = 16384
"""Store rows read at a time while collecting the token stream."""

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


@dataclass
class ReplayCheck:
    """How far the replayed activations at the store's hook are from the stored ones."""

    rows: int = 0
    sq_err: float = 0.0
    sq_norm: float = 0.0
    max_row_error: float = 0.0
    """Largest ‖replayed − stored‖ / ‖stored‖ of one row."""
    placeholders: int = 0
    """Special tokens inside texts, in the replayed contexts, replaced by a BOS."""

    def add(self, replayed_ND: Tensor, stored_ND: Tensor) -> None:
        diff_N = (replayed_ND.float() - stored_ND.float()).norm(dim=1).double()
        norm_N = stored_ND.float().norm(dim=1).double()
        self.rows += len(diff_N)
        self.sq_err += float(diff_N.square().sum())
        self.sq_norm += float(norm_N.square().sum())
        if len(diff_N):
            rel = diff_N / norm_N.clamp_min(1e-30)
            self.max_row_error = max(self.max_row_error, float(rel.max()))

    @property
    def rel_error(self) -> float:
        """‖replayed − stored‖ / ‖stored‖ over all rows (float16 storage alone: ~1e-3)."""
        return math.sqrt(self.sq_err / self.sq_norm) if self.sq_norm > 0 else float("nan")

    def describe(self) -> dict[str, float | int]:
        return {"rows": self.rows, "rel_error": self.rel_error,
                "max_row_error": self.max_row_error, "placeholders": self.placeholders}


def replay_settings(store: ActivationStore) -> TextSettings:
    """How the store's harvest packed and batched its contexts."""
    m = store.manifest
    if "ctx_len" not in m:
        raise UserError(f"store {store.path} records no context length (not written by "
                        "`harvest`?): its rows cannot be computed again with the MLP neurons")
    return TextSettings(ctx_len=int(m["ctx_len"]), exclude_special=bool(m["exclude_special"]),
                        model_dtype=str(m.get("model_dtype", "float32")),
                        contexts_per_forward=int(m.get("batch_size", 8)),
                        taken_from=f"store {store.path}")


@dataclass
class Stream:
    """The token stream of the store's documents up to a row: [BOS, text...] per document."""

    tokens_T: np.ndarray
    rows_T: np.ndarray
    """Store row of each token; BOS_ROW or PLACEHOLDER_ROW for the others."""
    starts_T: np.ndarray
    """True at a document's own BOS (a context may start there without an inserted BOS)."""


def store_stream(store: ActivationStore, stop: int, bos: int) -> Stream:
    """The stream of the documents of store rows [0, stop) (their text tokens only; BOS rows of
    a store harvested with special tokens are rebuilt like the others)."""
    parts = [(b.tokens_N.numpy(), b.doc_ids_N.numpy(), b.positions_N.numpy())
             for b in store.iter_rows(READ_ROWS, rows=range(0, stop))]
    tok, doc, pos = (np.concatenate([p[i] for p in parts]) for i in range(3))
    rows = np.flatnonzero(pos >= 1)  # text tokens
    tok, doc, pos = tok[rows], doc[rows], pos[rows]
    new_doc = np.ones(len(rows), dtype=bool)
    new_doc[1:] = doc[1:] != doc[:-1]
    before = np.where(new_doc, 0, np.concatenate([[0], pos[:-1]]))
    gap = pos - before - 1  # special tokens of the text left out of the store
    if (gap < 0).any():
        at = int(rows[np.flatnonzero(gap < 0)[0]])
        raise UserError(f"store {store.path}: positions go backwards within a document at row "
                        f"{at:,}; the store's rows are not in corpus order")
    extra = new_doc.astype(np.int64) + gap
    at_T = np.arange(len(rows)) + np.cumsum(extra)
    n_tokens = len(rows) + int(extra.sum())
    stream = Stream(np.full(n_tokens, bos, dtype=np.int64),
                    np.full(n_tokens, PLACEHOLDER_ROW, dtype=np.int64),
                    np.zeros(n_tokens, dtype=bool))
    stream.tokens_T[at_T] = tok
    stream.rows_T[at_T] = rows
    own_bos = at_T[new_doc] - gap[new_doc] - 1
    stream.rows_T[own_bos] = BOS_ROW
    stream.starts_T[own_bos] = True
    return stream


def stream_contexts(stream: Stream, ctx_len: int, bos: int, pad: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(tokens [ctx_len], rows [ctx_len]) of each context cut from the stream as
    `data.packing` cuts them; the last padded."""
    start, n = 0, len(stream.tokens_T)
    while start < n:
        own = bool(stream.starts_T[start])
        take = ctx_len if own else ctx_len - 1
        tokens, rows = stream.tokens_T[start:start + take], stream.rows_T[start:start + take]
        if not own:
            tokens, rows = np.concatenate([[bos], tokens]), np.concatenate([[BOS_ROW], rows])
        if len(tokens) < ctx_len:
            fill = ctx_len - len(tokens)
            tokens = np.concatenate([tokens, np.full(fill, pad)])
            rows = np.concatenate([rows, np.full(fill, BOS_ROW)])
        yield tokens, rows
        start += take


def replay_rows(lm: LoadedModel, store: ActivationStore, rows: range, hooks: Sequence[str],
                check: ReplayCheck | None = None) -> Iterator[ReplayBatch]:
    """The store's rows `rows` at `hooks` (float32), computed again by `lm` (load it in the
    harvest's model dtype, `replay_settings(store).torch_dtype`) over the store's contexts, one
    forward of the harvest's batch size at a time; `check` gets the error at the store's
    hook."""
    if store.hook not in hooks:
        raise ValueError(f"the hooks {list(hooks)} must include the store's {store.hook}")
    settings = replay_settings(store)
    bos = bos_token_id(lm.tokenizer)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else bos
    stream = store_stream(store, rows.stop, bos)
    wanted = [(t, r) for t, r in stream_contexts(stream, settings.ctx_len, bos, int(pad))
              if ((r >= rows.start) & (r < rows.stop)).any()]
    for lo in range(0, len(wanted), settings.contexts_per_forward):
        chunk = wanted[lo:lo + settings.contexts_per_forward]
        tokens_BS = torch.from_numpy(np.stack([t for t, _ in chunk]))
        rows_BS = torch.from_numpy(np.stack([r for _, r in chunk]))
        keep_BS = (rows_BS >= rows.start) & (rows_BS < rows.stop)
        acts = capture(lm, tokens_BS.to(lm.device), list(hooks))
        keep_dev = keep_BS.to(lm.device)
        batch = ReplayBatch(int(rows_BS[keep_BS][0]),
                            {h: a[keep_dev].float() for h, a in acts.items()},
                            tokens_BS[keep_BS])
        if check is not None:
            row_N = rows_BS[keep_BS].numpy()
            check.placeholders += _placeholders_in(rows_BS, keep_BS)
            check.add(batch.acts[store.hook].cpu(), store.take(row_N).acts_ND)
        yield batch


def _placeholders_in(rows_BS: Tensor, keep_BS: Tensor) -> int:
    """Placeholders in the contexts that hold measured rows."""
    holds = keep_BS.any(dim=1)
    return int((rows_BS[holds] == PLACEHOLDER_ROW).sum())

