"""The analysis pass's encode thread: ordering, row chunks, thread counts."""

from __future__ import annotations

import threading

import pytest
import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.codestream import auto_chunk_rows, spans
from monosemantic.devices import torch_threads


def row_batches(n_batches: int, rows: int, d: int = 4):
    gen = torch.Generator().manual_seed(0)
    for b in range(n_batches):
        yield RowBatch(torch.randn(rows, d, generator=gen), torch.arange(rows) + b * rows,
                       torch.zeros(rows, dtype=torch.int64), torch.zeros(rows, dtype=torch.int64))


@pytest.fixture
def two_threads():
    with torch_threads(2):
        yield


def test_spans_hold_every_row_once_in_order_whatever_the_chunks():
    def encode(x_BD):
        return torch.relu(x_BD)

    for ahead, chunk in ((0, 0), (1, 3), (2, 8)):
        seen = [cur.rows_E for cur, _span in spans(row_batches(3, 8), encode, 100, ahead, chunk)]
        whole = [cur.rows_E for cur, _span in spans(row_batches(3, 8), encode, 100, 0, 0)]
        assert [t.tolist() for t in seen] == [t.tolist() for t in whole]
        assert torch.cat(seen).unique_consecutive().tolist()[0] >= 100


def test_encode_runs_in_a_thread_with_the_callers_thread_count(two_threads):
    calls = []

    def encode(x_BD):
        calls.append((threading.current_thread() is threading.main_thread(),
                      torch.get_num_threads()))
        return torch.relu(x_BD)

    stream = spans(row_batches(4, 8), encode, 0, ahead=1, chunk_rows=4)
    next(stream)  # starts the encode thread with the caller's count, 2
    # The caller's bookkeeping then drops to one thread (as one_thread() does): the encode
    # thread keeps its own count.
    torch.set_num_threads(1)
    for _cur, _span in stream:
        pass
    assert len(calls) == 8
    assert all(not on_main for on_main, _ in calls)
    assert {n for _, n in calls} == {2}


def test_codes_do_not_depend_on_thread_count_or_row_split(two_threads):
    """What the core sharing relies on, checked for the BLAS of the torch in use."""
    gen = torch.Generator().manual_seed(0)
    x_BD, W_DF = torch.randn(1024, 640, generator=gen), torch.randn(640, 4096, generator=gen)
    b_F = torch.randn(4096, generator=gen)

    def encode(x):
        return torch.relu(torch.nn.functional.linear(x, W_DF.T, b_F))

    whole = encode(x_BD)
    torch.set_num_threads(1)
    parts = [encode(x_BD[i:i + 256]) for i in range(0, 1024, 256)]
    assert torch.equal(encode(x_BD), whole)
    torch.set_num_threads(2)
    parts[1] = encode(x_BD[256:512])
    assert torch.equal(torch.cat(parts), whole)


def test_auto_chunk_rows():
    assert auto_chunk_rows(4096) == 1024
    assert auto_chunk_rows(16384) == 256
    assert auto_chunk_rows(1 << 20) == 64


@pytest.mark.parametrize("workers, threads, threads_each", [(3, 2, 1), (2, 4, 2)])
def test_workers_split_the_threads_and_keep_the_order(workers, threads, threads_each):
    with torch_threads(threads):
        _check_workers(workers, threads_each)


def _check_workers(workers: int, threads_each: int) -> None:
    calls = []

    def encode(x_BD):
        calls.append((threading.current_thread().name, torch.get_num_threads()))
        return torch.relu(x_BD)

    pooled = [(cur.lo, cur.rows_E.tolist(), cur.feats_E.tolist())
              for cur, _span in spans(row_batches(5, 8), encode, 7, ahead=1, chunk_rows=2,
                                      workers=workers)]
    alone = [(cur.lo, cur.rows_E.tolist(), cur.feats_E.tolist())
             for cur, _span in spans(row_batches(5, 8), lambda x: torch.relu(x), 7, ahead=1,
                                     chunk_rows=2)]
    assert pooled == alone
    assert len(calls) == 20
    assert all(name.startswith("analysis-encode-worker") for name, _ in calls)
    assert {n for _, n in calls} == {threads_each}
    assert not any(t.name.startswith("analysis-encode") for t in threading.enumerate())


def test_a_worker_error_reaches_the_caller_and_stops_the_workers():
    def encode(x_BD):
        if x_BD[0, 0] > 2.0:  # some chunk of some batch
            raise ValueError("bad rows")
        return torch.relu(x_BD)

    with pytest.raises(ValueError, match="bad rows"):
        for _ in spans(row_batches(50, 8), encode, 0, ahead=1, chunk_rows=1, workers=2):
            pass
    assert not any(t.name.startswith("analysis-encode") for t in threading.enumerate())
