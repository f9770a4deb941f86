"""Activation store reader: shuffled order, resumption, row ranges, corpus order, prefetch."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_activations_store import all_acts, write_store

from monosemantic.activations.prefetch import prefetched
from monosemantic.activations.reader import ActivationStore
from monosemantic.activations.shuffle import Permutation
from monosemantic.errors import UserError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store")
    write_store(path, n_rows=100, d=4, dtype="float32", shard_rows=32)
    return ActivationStore(path)


def row_ids(batches) -> list[int]:
    return [int(v) for b in batches for v in b[:, 0]]


def test_shuffled_pass_is_a_seeded_permutation_of_all_rows(store):
    first = row_ids(store.iter_batches(10, seed=3))
    assert sorted(first) == list(range(100))
    assert first != list(range(100))
    assert row_ids(store.iter_batches(10, seed=3)) == first
    assert row_ids(store.iter_batches(10, seed=4)) != first


def test_partial_batch_is_dropped_when_shuffling(store):
    batches = list(store.iter_batches(30, seed=1))
    assert [len(b) for b in batches] == [30, 30, 30]
    assert len(set(row_ids(batches))) == 90
    assert store.n_batches(30) == 3 and store.n_batches(30, shuffle=False) == 4


def test_batches_hold_whole_rows(store):
    expected = all_acts(100, 4)
    for batch in store.iter_batches(16, seed=0):
        assert torch.equal(batch, expected[batch[:, 0].long()])


def test_start_batch_resumes_the_same_sequence(store):
    full = [b.clone() for b in store.iter_batches(8, seed=5)]
    tail = list(store.iter_batches(8, seed=5, start_batch=7))
    assert len(tail) == len(full) - 7
    assert all(torch.equal(a, b) for a, b in zip(full[7:], tail))


def test_parts_of_each_batch_make_up_the_whole_batch(store):
    """Data-parallel ranks: part i of n is the i-th slice of every batch, resumable too."""
    whole = list(store.iter_batches(12, seed=5, start_batch=2, rows=range(0, 90)))
    parts = [list(store.iter_batches(12, seed=5, start_batch=2, rows=range(0, 90),
                                     part=(i, 3))) for i in range(3)]
    for b, batch in enumerate(whole):
        assert [len(p[b]) for p in parts] == [4, 4, 4]
        assert torch.equal(torch.cat([p[b] for p in parts]), batch)
    with pytest.raises(ValueError, match="equally"):
        next(store.iter_batches(10, part=(0, 3)))


def test_rows_range_selects_train_and_holdout(store):
    train = row_ids(store.iter_batches(10, rows=range(0, 80), seed=2))
    holdout = row_ids(store.iter_batches(5, rows=range(80, 100), seed=2))
    assert sorted(train) == list(range(80))
    assert sorted(holdout) == list(range(80, 100))
    with pytest.raises(UserError, match="outside"):
        next(store.iter_batches(10, rows=range(50, 200)))
    with pytest.raises(UserError, match="step 1"):
        next(store.iter_batches(10, rows=range(0, 100, 2)))


def test_ordered_rows_carry_their_metadata(store):
    batches = list(store.iter_rows(33, rows=range(5, 100)))
    assert [len(b.acts_ND) for b in batches] == [33, 33, 29]
    acts = torch.cat([b.acts_ND for b in batches])
    rows = torch.arange(5, 100)
    assert torch.equal(acts, all_acts(100, 4)[5:])
    assert torch.equal(torch.cat([b.tokens_N for b in batches]), rows % 97)
    assert torch.equal(torch.cat([b.doc_ids_N for b in batches]), rows // 10)
    assert torch.equal(torch.cat([b.positions_N for b in batches]), rows % 10)
    assert batches[0].tokens_N.dtype == torch.int64


def test_take_returns_rows_in_the_order_asked(store):
    got = store.take([70, 3, 33, 3])
    assert got.acts_ND[:, 0].tolist() == [70, 3, 33, 3]
    assert got.doc_ids_N.tolist() == [7, 0, 3, 0]


def test_prefetch_thread_stops_when_the_consumer_stops_early(store):
    before = {t.ident for t in threading.enumerate()}
    for _ in store.iter_batches(4, seed=0, prefetch=2):
        break
    for _ in store.iter_rows(4, prefetch=2):
        break
    extra = [t for t in threading.enumerate()
             if t.ident not in before and t.name.startswith("store-") and t.name != "store-verify"]
    assert extra == []


def test_prefetch_forwards_errors():
    def failing():
        yield 1
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for item in prefetched(failing(), depth=2):
            got.append(item)
    assert got == [1]


@pytest.mark.parametrize("n", [1, 7, 1000, 70_001])
def test_pointwise_permutation_is_a_bijection(n):
    perm = Permutation(n, seed=11, materialize_max=0)  # the Feistel path, used for big stores
    values = perm[np.arange(n)]
    assert np.array_equal(np.sort(values), np.arange(n))
    assert np.array_equal(Permutation(n, seed=11, materialize_max=0)[np.arange(n)], values)
    if n > 100:
        assert not np.array_equal(values, np.arange(n))
        assert not np.array_equal(values, Permutation(n, seed=12, materialize_max=0)[np.arange(n)])
