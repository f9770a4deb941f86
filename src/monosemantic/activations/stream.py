"""Streaming mode: activations straight from the model, no disk, for runs too large to store.

Rows from consecutive contexts are strongly correlated (same document), so they pass through a
mixing buffer of `buffer_rows` rows: when it is full it is shuffled, its first half is handed
out and the second half stays to be mixed with new rows. The order of the rows handed out
depends on the arguments only (not on `batch_size`), so `skip_rows` can resume or split a stream.
Memory: about 2 x `buffer_rows` x D floats, on the model's device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from monosemantic.activations.model_rows import context_batches, model_rows
from monosemantic.data import CorpusConfig, CorpusReport
from monosemantic.errors import UserError
from monosemantic.models import LoadedModel


def norm_scale_of(acts_ND: Tensor) -> float:
    """s with mean ‖s·x‖² = D over these rows (float64), as the store's `norm_scale`."""
    mean_sq = float(acts_ND.double().square().sum(-1).mean())
    return (acts_ND.shape[-1] / mean_sq) ** 0.5 if mean_sq > 0 else 1.0


def _corpus_config(corpus: CorpusConfig | str) -> CorpusConfig:
    if isinstance(corpus, CorpusConfig):
        return corpus
    return CorpusConfig() if corpus in ("", "default") else CorpusConfig(source=str(corpus))


def stream_activations(model: LoadedModel | str, corpus: CorpusConfig | str, hook: str,
                       batch_size: int = 4096, *, ctx_len: int = 256, model_batch_size: int = 8,
                       buffer_rows: int = 65536, seed: int = 0, exclude_special: bool = True,
                       skip_rows: int = 0, max_rows: int | None = None, scale: float = 1.0,
                       device: str = "cpu", report: CorpusReport | None = None,
                       part: tuple[int, int] = (0, 1)) -> Iterator[Tensor]:
    """Float32 `[batch_size, D]` batches of `hook` activations, shuffled within the buffer.

    model: a LoadedModel, or a spec `load_model` accepts (loaded on `device`).
    corpus: a CorpusConfig, or a source string (`default` is the offline local corpus).
    Special tokens are excluded as in `harvest`. `skip_rows` drops that many shuffled rows
    first (they are still computed: the model has to run to get past them). `max_rows` stops
    after that many rows have been taken from the model (None: the whole corpus). The final
    partial batch is dropped. `scale` multiplies every row (pass a store's or
    `norm_scale_of`'s value to normalize). `part` = (i, n): stream only the documents of
    the corpus's i-th of n disjoint parts (`data.documents_part`; a data-parallel rank's).
    The same arguments give the same batches.
    """
    if batch_size <= 0 or buffer_rows < 2 or skip_rows < 0:
        raise UserError(f"need batch_size > 0, buffer_rows >= 2 and skip_rows >= 0 (got "
                        f"{batch_size}, {buffer_rows}, {skip_rows})")
    if isinstance(model, str):
        from monosemantic.models import load_model

        model = load_model(model, device=device)
    chunks = _mixed_rows(model, _corpus_config(corpus), hook, ctx_len, model_batch_size,
                         buffer_rows, seed, exclude_special, max_rows, report, part)
    pending: list[Tensor] = []
    held = 0
    for rows_ND in chunks:
        if skip_rows:
            drop = min(skip_rows, len(rows_ND))
            rows_ND, skip_rows = rows_ND[drop:], skip_rows - drop
        pending.append(rows_ND)
        held += len(rows_ND)
        if held < batch_size:
            continue
        joined_ND = torch.cat(pending)
        n_full = (held // batch_size) * batch_size
        for batch_BD in joined_ND[:n_full].split(batch_size):
            yield batch_BD * scale if scale != 1.0 else batch_BD
        pending, held = [joined_ND[n_full:]], held - n_full


def _mixed_rows(lm: LoadedModel, corpus: CorpusConfig, hook: str, ctx_len: int,
                model_batch_size: int, buffer_rows: int, seed: int, exclude_special: bool,
                max_rows: int | None, report: CorpusReport | None,
                part: tuple[int, int] = (0, 1)) -> Iterator[Tensor]:
    """Float32 chunks of shuffled rows (each chunk a fresh tensor, never the buffer itself)."""
    width = lm.hook_point(hook).width
    gen = torch.Generator().manual_seed(seed)
    buffer_ND = torch.empty(buffer_rows, width, device=lm.device)
    fill, taken = 0, 0
    batches = context_batches(lm, corpus, ctx_len, model_batch_size, report, part)
    for rows in model_rows(lm, batches, [hook], exclude_special):
        assert rows.acts is not None  # start_batch 0: every batch is run
        acts_ND = rows.acts[hook]
        if max_rows is not None:
            acts_ND = acts_ND[:max_rows - taken]
        taken += len(acts_ND)
        while len(acts_ND):
            n = min(buffer_rows - fill, len(acts_ND))
            buffer_ND[fill:fill + n] = acts_ND[:n].float()
            fill, acts_ND = fill + n, acts_ND[n:]
            if fill == buffer_rows:
                mixed_ND = _shuffled(buffer_ND, gen)
                half = buffer_rows // 2
                yield mixed_ND[:half]
                fill = buffer_rows - half
                buffer_ND[:fill] = mixed_ND[half:]
        if max_rows is not None and taken >= max_rows:
            break
    yield _shuffled(buffer_ND[:fill], gen)


def _shuffled(rows_ND: Tensor, gen: torch.Generator) -> Tensor:
    perm_N = torch.randperm(len(rows_ND), generator=gen).to(rows_ND.device)
    return rows_ND[perm_N]
