"""The analysis pass's code stream: batches encoded by the SAE, as sparse codes, while the
bookkeeping of earlier batches runs.

`spans` yields, for every batch in corpus order, its sparse codes and the span of the previous,
current and next batches (what token windows are read from). With `ahead` > 0 the batches are
read and encoded in a background thread, so the caller's bookkeeping of one batch overlaps the
encode of the next (the encode's GEMMs release the GIL).

Sparse codes. The SAE gives each chunk's codes as a list (`SAE.encode_sparse`): topk takes
them from its top-k picks, skipping the scatter into dense codes and the scan for their
nonzeros (docs/benchmarks.md has the pass with either); an encode that returns dense codes
has their nonzeros listed here.

Row chunks. Each batch is encoded `chunk_rows` rows at a time (about 4M codes per call by
default): the pre-activations and dense codes of a call stay small (16 MiB each instead of
4·B·F bytes), and on this 2-core machine chunked encodes were faster than whole batches
(docs/benchmarks.md). The codes
do not depend on it: MKL's float32 GEMM gives the same floats for any row split of at least
64 rows (tests/unit check it for the torch in use), and every trained SAE encodes rows
independently. (Tried and dropped: giving the encode one thread fewer while the bookkeeping
runs; it was slower than letting the two share the cores.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from monosemantic.activations.prefetch import prefetched
from monosemantic.analysis.windows import RowSpan, SparseRows
from monosemantic.sae.kernels import SparseCodes

Encode = Callable[[Tensor], Tensor | SparseCodes]
"""Rows [C, d] -> their codes, dense [C, F] or listed (`SAE.encode_sparse`: topk's list costs
less than its dense codes)."""

CHUNK_FLOATS = 1 << 22
"""Automatic chunks hold about this many dense codes (16 MiB in float32)."""
MIN_CHUNK_ROWS = 64
"""Below this a GEMM gets inefficient (and MKL may pick another kernel)."""


def auto_chunk_rows(n_features: int) -> int:
    """Rows per encode call for a dictionary (slice) of `n_features`: ~`CHUNK_FLOATS` codes."""
    return max(MIN_CHUNK_ROWS, CHUNK_FLOATS // max(n_features, 1))


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the bookkeeping's many small tensor ops on one thread, then restore the count.

    They touch ~10^5 elements each, where intra-op threads gain little, and on a busy machine
    threads that wait for each other made pass 1 several times slower (measured on 2 shared
    cores: 68 s with 2 threads vs 3 s with one, for the same work). Torch's thread count is
    per thread once set, so this does not reach the encode thread.
    """
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


def spans(batches: Iterable, encode: Encode, first_row: int, ahead: int = 1,
          chunk_rows: int = 0) -> Iterator[tuple[SparseRows, RowSpan]]:
    """(current batch, span of previous + current + next batch) for every batch, in order.

    `ahead` batches are encoded ahead in a background thread (0: in the calling thread between
    batches); each batch is encoded `chunk_rows` rows at a time (0: whole batches).
    """
    encoded = _encoded(batches, encode, first_row, chunk_rows, torch.get_num_threads())
    prev = cur = None
    for part in prefetched(encoded, depth=ahead, name="analysis-encode"):
        if cur is not None:
            yield cur, RowSpan([p for p in (prev, cur, part) if p is not None])
        prev, cur = cur, part
    if cur is not None:
        yield cur, RowSpan([p for p in (prev, cur) if p is not None])


def _encoded(batches: Iterable, encode: Encode, first_row: int, chunk_rows: int,
             n_threads: int) -> Iterator[SparseRows]:
    """The sparse codes of each batch, in order (runs in the encode thread when prefetched)."""
    # Pin this thread's count to the caller's: a new thread would otherwise take whatever
    # torch's global count is at its first op (one during the caller's bookkeeping).
    torch.set_num_threads(n_threads)
    lo = first_row
    for batch in batches:
        n_rows = len(batch.tokens_N)
        if n_rows == 0:
            continue
        step = chunk_rows if chunk_rows > 0 else n_rows
        chunks = []
        for start in range(0, n_rows, step):
            stop = start + step
            with torch.no_grad():  # grad mode is thread-local: the caller's does not reach here
                codes = encode(batch.acts_ND[start:stop])
                if not isinstance(codes, SparseCodes):
                    codes = SparseCodes.positive(codes)
                chunks.append(SparseRows.from_codes(lo + start, codes, batch.tokens_N[start:stop],
                                                    batch.doc_ids_N[start:stop]))
            del codes
        part = SparseRows.join(chunks)
        lo += part.n
        part.by_feature()  # the window lookups' sort, done here: off the bookkeeping thread
        yield part
