"""The shards of a store that one rank of a distributed harvest writes, and the manifest rank 0
makes of all ranks' shards.

Shard s holds the global rows [s·R, (s + 1)·R) (R = `shard_rows`), as in a 1-process harvest;
rank r of N owns the shards with s % N = r. A rank fills and writes its shards itself and
records each, once its file is in place, in `.ranks/shard_NNNNN.json` (the manifest entry plus
the harvest's resume point after it). Those records make a crashed harvest resumable with any
number of ranks: a recorded shard whose file has the recorded size is not harvested again.
`finalize_store` (rank 0, once every rank is done) writes the manifest of all shards, marks the
store complete and removes `.ranks`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import Tensor

from monosemantic.activations.manifest import (
    RECORDS,
    StoreError,
    finalize_scale,
    read_manifest,
    shard_name,
    write_manifest,
)
from monosemantic.activations.writer import ShardBuffer, to_storage
from monosemantic.fsutil import atomic_write_text


def shard_span(first_row: int, n_rows: int, shard_rows: int) -> range:
    """The shards that global rows [first_row, first_row + n_rows) touch."""
    if n_rows <= 0:
        return range(0)
    return range(first_row // shard_rows, (first_row + n_rows - 1) // shard_rows + 1)


def read_records(path: Path) -> dict[int, dict]:
    """Shard index -> record, for the shards `path` holds complete: those of its manifest (a
    1-process harvest's committed shards) and those recorded in `.ranks` whose file has the
    recorded size."""
    manifest = read_manifest(path)
    last = len(manifest["shards"]) - 1
    records = {i: {**entry, "resume": _resume(manifest["resume"]) if i == last else None}
               for i, entry in enumerate(manifest["shards"])}
    for file in sorted((path / RECORDS).glob("shard_*.json")):
        record = json.loads(file.read_text())
        shard = path / record["file"]
        if shard.is_file() and shard.stat().st_size == record["bytes"]:
            records[int(file.stem.removeprefix("shard_"))] = record
    return records


def _resume(resume: dict) -> list[int]:
    return [int(resume["batch"]), int(resume["row"])]


class OwnedShards:
    """Writes the shards of the store at `path` that rank `rank` of `world` owns and that
    `done` (shard -> record, `read_records`) does not hold yet; memory: one shard."""

    def __init__(self, path: Path, d: int, dtype: str, shard_rows: int, rank: int, world: int,
                 done: dict[int, dict]):
        self.path, self.shard_rows, self.rank, self.world = Path(path), shard_rows, rank, world
        self.dtype = dtype
        self.records = {s: r for s, r in done.items() if s % world == rank}
        """This rank's shards written so far (including those found done)."""
        self._buffer = ShardBuffer(shard_rows, d, dtype)
        (self.path / RECORDS).mkdir(exist_ok=True)

    def needs(self, shard: int) -> bool:
        """Whether this rank has yet to write `shard`."""
        return shard % self.world == self.rank and shard not in self.records

    def append(self, acts_ND: Tensor, tokens_N: Tensor, doc_ids_N: Tensor, positions_N: Tensor,
               batch: int, first_row: int) -> None:
        """Keep the rows of harvest batch `batch` (first at global row `first_row`) that fall in
        shards this rank needs; writes each such shard as it fills."""
        n, size = len(acts_ND), self.shard_rows
        wanted = [s for s in shard_span(first_row, n, size) if self.needs(s)]
        if not wanted:
            return
        stored_ND = to_storage(acts_ND, self.dtype, f"activations of batch {batch}")
        meta = {"tokens": tokens_N, "doc_ids": doc_ids_N, "positions": positions_N}
        meta_np = {k: v.detach().cpu().numpy() for k, v in meta.items()}
        for shard in wanted:
            lo, hi = max(first_row, shard * size), min(first_row + n, (shard + 1) * size)
            if self._buffer.fill != lo - shard * size:
                raise ValueError(f"shard {shard} holds {self._buffer.fill} rows, but the next "
                                 f"rows start at {lo - shard * size}: batches came out of order")
            a, b = lo - first_row, hi - first_row
            self._buffer.put(stored_ND[a:b], {k: v[a:b] for k, v in meta_np.items()})
            if self._buffer.fill == size:
                # The resume point a 1-process harvest records after this shard.
                resume = [batch, first_row] if b < n else [batch + 1, first_row + n]
                self._write(shard, resume)

    def finish(self, total_rows: int) -> None:
        """Write the last, partial shard if it is this rank's (`total_rows`: the harvest's)."""
        if self._buffer.fill:
            self._write((total_rows - 1) // self.shard_rows, None)
        self._buffer.release()

    def _write(self, shard: int, resume: list[int] | None) -> None:
        record = {**self._buffer.write(self.path, shard), "resume": resume}
        atomic_write_text(self.path / RECORDS / f"{shard_name(shard)[:-4]}.json",
                          json.dumps(record, sort_keys=True))
        self.records[shard] = record


def finalize_store(path: Path, records: dict[int, dict], total_rows: int) -> dict:
    """Rank 0: the complete manifest of the store at `path` from every rank's shard records
    (as a 1-process harvest of `total_rows` rows writes it); removes `.ranks`."""
    manifest = read_manifest(path)
    size = int(manifest["shard_rows"])
    n_shards = -(-total_rows // size)
    missing = [s for s in range(n_shards) if s not in records]
    if missing or total_rows == 0:
        raise StoreError(f"{path}: shards {missing[:5]} of {n_shards} were not written; run the "
                         "same harvest again to finish them" if total_rows else
                         f"no rows were harvested into {path}: the corpus gave no tokens (all "
                         "special?); check --corpus.source")
    shards = [records[s] for s in range(n_shards)]
    # A 1-process harvest keeps the resume point of its last full shard.
    full = [r for r in shards if r["rows"] == size]
    resume = full[-1]["resume"] if full and full[-1]["resume"] is not None else [0, 0]
    manifest["shards"] = [{k: v for k, v in r.items() if k != "resume"} for r in shards]
    manifest["rows"] = total_rows
    manifest["resume"] = {"batch": resume[0], "row": resume[1]}
    finalize_scale(manifest)
    manifest["complete"] = True
    write_manifest(path, manifest)
    shutil.rmtree(path / RECORDS, ignore_errors=True)
    return manifest
