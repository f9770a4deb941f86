"""Model forward over packed contexts -> the rows worth keeping, shared by harvest and streaming.

A row is one token position. Padding (the tail of the corpus's last context) is never kept;
with `exclude_special` (the default) neither are BOS or any other special token: their
activation norms are orders of magnitude above the rest and would dominate an SAE's loss.
Rows come out in corpus order: context by context, position by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from monosemantic.activations.prefetch import prefetched
from monosemantic.data import (
    ContextBatch,
    CorpusConfig,
    CorpusReport,
    batch_contexts,
    documents_part,
    iter_documents,
    pack_contexts,
)
from monosemantic.models import LoadedModel, capture


@dataclass
class RowsBatch:
    """The kept rows of one batch of contexts."""

    index: int
    """Batch index since the start of the corpus."""
    n_rows: int
    """Rows kept in this batch (known even when the forward was skipped)."""
    acts: dict[str, Tensor] | None
    """Hook name -> `[n_rows, D]` activations (model dtype, model device); None when skipped."""
    tokens_N: Tensor
    doc_ids_N: Tensor
    positions_N: Tensor
    """Position of the token in its document (0 is the document's own BOS)."""
    n_tokens: int
    """Tokens run through the model for this batch (kept or not)."""


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of every special token the tokenizer declares (BOS, EOS, pad, ...)."""
    return sorted({int(i) for i in tokenizer.all_special_ids if i is not None})


def keep_mask(batch: ContextBatch, special_ids: Sequence[int], exclude_special: bool) -> Tensor:
    """Bool `[B, S]`: the positions whose activations are kept."""
    tokens_BS = batch.tokens
    # Padding is the only token with doc_id -1 past the first column (column 0 may hold an
    # inserted BOS, which counts as a special token, not as padding).
    padding_BS = batch.doc_ids < 0
    padding_BS[:, 0] = False
    keep_BS = ~padding_BS
    if exclude_special and special_ids:
        keep_BS &= ~torch.isin(tokens_BS, torch.tensor(list(special_ids), dtype=tokens_BS.dtype))
    return keep_BS


def context_batches(lm: LoadedModel, corpus: CorpusConfig, ctx_len: int, batch_size: int,
                    report: CorpusReport | None = None, part: tuple[int, int] = (0, 1)
                    ) -> Iterator[ContextBatch]:
    """`[batch_size, ctx_len]` token batches of the corpus, in corpus order; `part` = (i, n):
    of its i-th of n parts only (`documents_part`)."""
    documents = iter_documents(corpus, report)
    if part[1] > 1:
        documents = documents_part(documents, part)
    return batch_contexts(pack_contexts(lm.tokenizer, documents, ctx_len), batch_size)


def model_rows(lm: LoadedModel, batches: Iterable[ContextBatch], hooks: Sequence[str],
               exclude_special: bool = True, start_batch: int = 0,
               run_rows: Callable[[int, int], bool] | None = None) -> Iterator[RowsBatch]:
    """Activations at `hooks` for the kept positions of each batch.

    Batches before `start_batch` are tokenized and counted but not run (`acts` None): that is
    how a harvest resumes. `run_rows(first_row, n_rows)`, when given, says for every later
    batch whether to run it, from the global index of its first kept row and its count (how
    a rank of a distributed harvest runs only the batches of its shards). Tokenization runs
    one batch ahead in a background thread.
    """
    special = special_token_ids(lm.tokenizer)
    row = 0
    for index, batch in enumerate(prefetched(iter(batches), depth=2, name="harvest-tokenize")):
        keep_BS = keep_mask(batch, special, exclude_special)
        n_rows = int(keep_BS.sum())
        acts = None
        if index >= start_batch and (run_rows is None or run_rows(row, n_rows)):
            acts_BSD = capture(lm, batch.tokens, list(hooks))
            keep_dev_BS = keep_BS.to(lm.device)
            acts = {name: a[keep_dev_BS] for name, a in acts_BSD.items()}
        row += n_rows
        yield RowsBatch(index=index, n_rows=n_rows, acts=acts,
                        tokens_N=batch.tokens[keep_BS], doc_ids_N=batch.doc_ids[keep_BS],
                        positions_N=batch.positions[keep_BS], n_tokens=batch.tokens.numel())
