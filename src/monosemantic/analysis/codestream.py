"""The analysis pass's code stream: batches encoded by the SAE, as sparse codes, while the
bookkeeping of earlier batches runs.

`spans` yields, for every batch in corpus order, its sparse codes and the span of the previous,
current and next batches (what token windows are read from). With `ahead` > 0 the batches are
read and encoded in a background thread, so the caller's bookkeeping of one batch overlaps the
encode of the next (the encode's GEMMs release the GIL).

Workers. The chunks are encoded by `workers` threads (two by default) that split torch's
threads among them, fed a batch ahead. A multi-threaded GEMM splits its work evenly and waits
for its slowest thread, so while the bookkeeping held one of this machine's two cores the whole
encode stalled: the pass cost about encode + bookkeeping, as if they did not overlap. Two
single-threaded workers let the OS share the cores among the three threads, and the wall-clock
overhead fell to the bookkeeping's CPU share (docs/benchmarks.md). On more cores each worker
runs a team of threads and the bookkeeping can stall one team, not the whole encode (not
measured: this machine has two). A GPU encode runs in one thread (`analyze` sets 1).

Sparse codes. The SAE gives each chunk's codes as a list (`SAE.encode_sparse`): topk takes
them from its top-k picks, skipping the scatter into dense codes and the scan for their
nonzeros (docs/benchmarks.md has the pass with either); an encode that returns dense codes
has their nonzeros listed here.

Row chunks. Each batch is encoded `chunk_rows` rows at a time (about 4M codes per call by
default): the pre-activations and dense codes of a call stay small (16 MiB each instead of
4·B·F bytes), and on this 2-core machine chunked encodes were faster than whole batches
(docs/benchmarks.md). The codes do not depend on it: MKL's float32 GEMM gives the same
floats for any row split of at least 64 rows and on one thread as on several (tests/unit
check both for the torch in use), and every trained SAE encodes rows independently. (Tried
and dropped: giving a multi-threaded encode one thread fewer while the bookkeeping runs; it
was slower.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from monosemantic.activations.prefetch import prefetched
from monosemantic.analysis.windows import RowSpan, SparseRows
from monosemantic.devices import torch_threads
from monosemantic.sae.kernels import SparseCodes

if TYPE_CHECKING:
    from monosemantic.activations.reader import RowBatch

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


def one_thread() -> AbstractContextManager[None]:
    """Run the bookkeeping's many small tensor ops on one thread, then restore the count.

    They touch ~10^5 elements each, where intra-op threads gain little, and on a busy machine
    threads that wait for each other made pass 1 several times slower (measured on 2 shared
    cores: 68 s with 2 threads vs 3 s with one, for the same work). Torch's thread count is
    per thread once set, so this does not reach the encode threads.
    """
    return torch_threads(1)


def threads_per_worker(n_threads: int, workers: int) -> int:
    """Torch threads of each of `workers` encode workers sharing `n_threads`."""
    return max(1, n_threads // max(workers, 1))


def spans(batches: Iterable, encode: Encode, first_row: int, ahead: int = 1,
          chunk_rows: int = 0, workers: int = 1) -> Iterator[tuple[SparseRows, RowSpan]]:
    """(current batch, span of previous + current + next batch) for every batch, in order.

    `ahead` batches are encoded ahead in a background thread (0: in the calling thread between
    batches); each batch is encoded `chunk_rows` rows at a time (0: whole batches), by
    `workers` threads that split torch's threads among them (1: in that thread, on all of
    them).
    """
    encoded = _encoded(batches, encode, first_row, chunk_rows, torch.get_num_threads(), workers)
    prev = cur = None
    for part in prefetched(encoded, depth=ahead, name="analysis-encode"):
        if cur is not None:
            yield cur, RowSpan([p for p in (prev, cur, part) if p is not None])
        prev, cur = cur, part
    if cur is not None:
        yield cur, RowSpan([p for p in (prev, cur) if p is not None])


def _encoded(batches: Iterable, encode: Encode, first_row: int, chunk_rows: int,
             n_threads: int, workers: int) -> Iterator[SparseRows]:
    """The sparse codes of each batch, in order (runs in the encode thread when prefetched).

    With workers, the chunks of the next batch are queued before this batch's are collected,
    so the workers never wait for a batch boundary."""
    # Pin this thread's count to the caller's: a new thread would otherwise take whatever
    # torch's global count is at its first op (one during the caller's bookkeeping).
    torch.set_num_threads(n_threads)
    with _chunk_runner(workers, threads_per_worker(n_threads, workers)) as submit:
        pending = None
        lo = first_row
        for batch in batches:
            n_rows = len(batch.tokens_N)
            if n_rows == 0:
                continue
            step = chunk_rows if chunk_rows > 0 else n_rows
            chunks = [submit(_encode_chunk, encode, batch, lo, start, start + step)
                      for start in range(0, n_rows, step)]
            if pending is not None:
                yield _collect(pending)
            pending = chunks
            lo += n_rows
        if pending is not None:
            yield _collect(pending)


def _encode_chunk(encode: Encode, batch: RowBatch, lo: int, start: int, stop: int) -> SparseRows:
    """Rows [start, stop) of a batch whose first row is global row `lo`, encoded."""
    with torch.no_grad():  # grad mode is thread-local: the caller's does not reach here
        codes = encode(batch.acts_ND[start:stop])
        if not isinstance(codes, SparseCodes):
            codes = SparseCodes.positive(codes)
        return SparseRows.from_codes(lo + start, codes, batch.tokens_N[start:stop],
                                     batch.doc_ids_N[start:stop])


def _collect(chunks: list) -> SparseRows:
    part = SparseRows.join([chunk.result() for chunk in chunks])
    part.by_feature()  # the window lookups' sort, done here: off the bookkeeping thread
    return part


class _Deferred:
    """A call run when its result is asked for (the chunks of `workers` = 1)."""

    def __init__(self, fn: Callable, *args):
        self._fn, self._args = fn, args

    def result(self):
        return self._fn(*self._args)


@contextmanager
def _chunk_runner(workers: int, threads_each: int) -> Iterator[Callable]:
    """`submit(fn, *args)` -> an object whose `result()` is fn(*args): run by a pool of
    `workers` threads of `threads_each` torch threads, or, for 1, in the thread that asks."""
    if workers <= 1:
        yield _Deferred
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="analysis-encode-worker",
                              initializer=torch.set_num_threads, initargs=(threads_each,))
    try:
        yield pool.submit
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
