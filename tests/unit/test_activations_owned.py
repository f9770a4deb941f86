"""The shards one rank of a distributed harvest writes (`activations.owned`): the ranks' shards
together, with the manifest rank 0 makes of them, are the store one `StoreWriter` writes."""

from __future__ import annotations

import pytest

from helpers.store_rows import HEADER, synthetic_batches, write_store
from monosemantic.activations.manifest import RECORDS, StoreError, new_manifest, write_manifest
from monosemantic.activations.owned import OwnedShards, finalize_store, read_records, shard_span


def test_shard_span():
    assert list(shard_span(30, 10, 32)) == [0, 1]
    assert list(shard_span(32, 32, 32)) == [1]
    assert list(shard_span(5, 0, 32)) == []


def owned_store(path, world, n_rows=100, d=4, shard_rows=32, batch_rows=10, ranks=None):
    """Every rank (or those in `ranks`) fed every batch, as the distributed harvest feeds them;
    returns the records of each rank."""
    path.mkdir()
    write_manifest(path, new_manifest(HEADER, d, "float32", shard_rows))
    records = []
    for rank in (range(world) if ranks is None else ranks):
        writer = OwnedShards(path, d, "float32", shard_rows, rank, world, read_records(path))
        for b, lo, acts, tok, doc, pos in synthetic_batches(n_rows, d, batch_rows):
            writer.append(acts, tok, doc, pos, batch=b, first_row=lo)
        writer.finish(n_rows)
        records.append(writer.records)
    return records


@pytest.mark.parametrize(("world", "batch_rows"), [(1, 10), (2, 10), (3, 7), (5, 64)])
def test_ranks_write_the_store_one_writer_writes(tmp_path, world, batch_rows):
    want = write_store(tmp_path / "one", batch_rows=batch_rows).manifest
    records = owned_store(tmp_path / "ranks", world, batch_rows=batch_rows)
    assert all(s % world == r for r, part in enumerate(records) for s in part)
    merged = {s: rec for part in records for s, rec in part.items()}
    got = finalize_store(tmp_path / "ranks", merged, 100)
    assert got == want  # shards (their SHA-256 too), rows, resume point, scale
    assert not (tmp_path / "ranks" / RECORDS).exists()
    for shard in want["shards"]:
        assert (tmp_path / "ranks" / shard["file"]).read_bytes() == \
            (tmp_path / "one" / shard["file"]).read_bytes()


def test_recorded_shards_are_not_written_again(tmp_path):
    path = tmp_path / "ranks"
    owned_store(path, 2, ranks=[0])  # rank 1 died: shards 0 and 2 recorded
    assert sorted(read_records(path)) == [0, 2]
    (path / "shard_00000.bin").write_bytes(b"short")  # a record whose file is damaged
    assert sorted(read_records(path)) == [2]
    again = OwnedShards(path, 4, "float32", 32, 0, 1, read_records(path))
    assert [s for s in range(4) if again.needs(s)] == [0, 1, 3]
    with pytest.raises(StoreError, match=r"shards \[0, 1, 3\] of 4 were not written"):
        finalize_store(path, read_records(path), 100)
