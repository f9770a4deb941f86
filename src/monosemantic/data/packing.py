"""Tokenize documents and pack them into fixed-length contexts.

Layout. Each document becomes the segment `[BOS, t_1, ..., t_n]` (text tokenized with
`add_special_tokens=False`; BOS added here), and segments are laid end to end, so the BOS of
the next document separates two documents. Contexts are cut from this stream, `ctx_len` tokens
each, and every context starts with BOS: when a cut falls inside a document, a BOS is inserted
at the start of the next context and the document continues after it.

Per token, `doc_ids` and `positions`:
- a document's own tokens (its BOS, then its text) carry its `doc_id` and their position in the
  segment: 0 for its BOS, 1..n for the text tokens (the indices `tokenizer(text)` would give
  with a BOS prepended);
- inserted tokens that are no part of any document (a BOS that restarts a continuing document,
  padding after the last document) carry doc_id -1 and position -1.
So `doc_ids >= 0` marks real tokens, and `positions >= 1` marks text tokens.

Tokenizers without a BOS token (GPT-2 style) use their EOS (`<|endoftext|>`) in its place.
The last context is padded (pad token, else the BOS) to `ctx_len`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from monosemantic.data.documents import Document
from monosemantic.errors import UserError

_EMPTY = np.zeros(0, dtype=np.int64)
Segments = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(tokens, doc_ids, positions) of consecutive document segments, laid end to end."""


@dataclass(frozen=True)
class Context:
    """One packed context; all three are LongTensor[S], S = ctx_len."""

    tokens: torch.Tensor
    doc_ids: torch.Tensor
    positions: torch.Tensor


@dataclass(frozen=True)
class ContextBatch:
    """Contexts stacked; all three are LongTensor[B, S]."""

    tokens: torch.Tensor
    doc_ids: torch.Tensor
    positions: torch.Tensor


def bos_token_id(tokenizer: Any) -> int:
    """The token that starts every context and separates documents: BOS, else EOS."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise UserError("the tokenizer has neither a BOS nor an EOS token, so contexts cannot be "
                    "marked; use a tokenizer that defines one")


def pack_contexts(tokenizer: Any, documents: Iterable[Document], ctx_len: int = 256,
                  tokenize_batch: int = 64, pad_last: bool = True) -> Iterator[Context]:
    """Contexts of exactly `ctx_len` tokens, BOS first, in document order (see module doc).

    Documents are tokenized `tokenize_batch` at a time (fast tokenizers run a batch in
    parallel). `pad_last=False` drops the final, incomplete context instead of padding it.
    """
    if ctx_len < 2:
        raise UserError(f"ctx_len must be at least 2 (BOS + one token), got {ctx_len}")
    if tokenize_batch < 1:
        raise UserError(f"tokenize_batch must be at least 1, got {tokenize_batch}")
    bos = bos_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else bos
    packer = _Packer(ctx_len, bos)
    for segments in _tokenized_segments(tokenizer, documents, bos, tokenize_batch):
        packer.extend(segments)
        yield from packer.full_contexts()
    if pad_last:
        last = packer.padded_rest(int(pad))
        if last is not None:
            yield last


def _tokenized_segments(tokenizer: Any, documents: Iterable[Document], bos: int,
                        batch: int) -> Iterator[Segments]:
    """The segments of each batch of `batch` documents."""
    for docs in _chunks(documents, batch):
        yield _segments(tokenizer, docs, bos)


def _chunks(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    pending: list[Document] = []
    for doc in documents:
        pending.append(doc)
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


def _segments(tokenizer: Any, docs: list[Document], bos: int) -> Segments:
    # verbose=False: documents longer than the model's max length are fine here (we cut them).
    encoded = tokenizer([d.text for d in docs], add_special_tokens=False,
                        return_attention_mask=False, verbose=False)["input_ids"]
    n_text = np.array([len(ids) for ids in encoded], dtype=np.int64)
    keep = n_text > 0  # a document with no tokens gets no segment (no lone BOS)
    seg_len = n_text[keep] + 1
    text_ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64,
                           count=int(n_text.sum()))
    seg_start = np.cumsum(seg_len) - seg_len
    # Each segment's BOS goes before its first text token.
    tokens = np.insert(text_ids, seg_start - np.arange(len(seg_len)), bos)
    doc_ids = np.repeat(np.array([d.doc_id for d in docs], dtype=np.int64)[keep], seg_len)
    positions = np.arange(len(tokens), dtype=np.int64) - np.repeat(seg_start, seg_len)
    return tokens, doc_ids, positions


class _Packer:
    """Holds the not-yet-emitted tail of the token stream and cuts contexts from it."""

    def __init__(self, ctx_len: int, bos: int) -> None:
        self.ctx_len = ctx_len
        self.bos = bos
        self.tokens, self.doc_ids, self.positions = _EMPTY, _EMPTY, _EMPTY

    def extend(self, segments: Segments) -> None:
        tokens, doc_ids, positions = segments
        self.tokens = np.concatenate([self.tokens, tokens])
        self.doc_ids = np.concatenate([self.doc_ids, doc_ids])
        self.positions = np.concatenate([self.positions, positions])

    def full_contexts(self) -> Iterator[Context]:
        start, n = 0, len(self.tokens)
        while True:
            # A context that begins at a document's own BOS takes it as its first token;
            # otherwise a BOS is inserted and one token fewer comes from the stream.
            take = self.ctx_len if self._starts_document(start) else self.ctx_len - 1
            if n - start < take:
                break
            yield self._context(start, take, pad=0, pad_id=0)
            start += take
        self._drop(start)

    def padded_rest(self, pad_id: int) -> Context | None:
        """The leftover tokens (fewer than a context) padded to `ctx_len`, or None if none."""
        n = len(self.tokens)
        if n == 0:
            return None
        inserted = 0 if self._starts_document(0) else 1
        context = self._context(0, n, pad=self.ctx_len - n - inserted, pad_id=pad_id)
        self._drop(n)
        return context

    def _starts_document(self, start: int) -> bool:
        return start < len(self.positions) and self.positions[start] == 0

    def _context(self, start: int, take: int, pad: int, pad_id: int) -> Context:
        stop = start + take
        parts = [(self.tokens[start:stop], self.doc_ids[start:stop], self.positions[start:stop])]
        if not self._starts_document(start):
            parts.insert(0, (np.array([self.bos]), np.array([-1]), np.array([-1])))
        if pad > 0:
            parts.append((np.full(pad, pad_id), np.full(pad, -1), np.full(pad, -1)))
        tokens, doc_ids, positions = (
            torch.from_numpy(np.concatenate([p[i] for p in parts]).astype(np.int64))
            for i in range(3)
        )
        return Context(tokens, doc_ids, positions)

    def _drop(self, upto: int) -> None:
        self.tokens = self.tokens[upto:]
        self.doc_ids = self.doc_ids[upto:]
        self.positions = self.positions[upto:]


def batch_contexts(contexts: Iterable[Context], batch_size: int,
                   drop_last: bool = False) -> Iterator[ContextBatch]:
    """Stack contexts into `[B, S]` batches; the last batch may be smaller unless `drop_last`."""
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    pending: list[Context] = []
    for context in contexts:
        pending.append(context)
        if len(pending) == batch_size:
            yield _stack(pending)
            pending = []
    if pending and not drop_last:
        yield _stack(pending)


def _stack(contexts: list[Context]) -> ContextBatch:
    return ContextBatch(
        tokens=torch.stack([c.tokens for c in contexts]),
        doc_ids=torch.stack([c.doc_ids for c in contexts]),
        positions=torch.stack([c.positions for c in contexts]),
    )
