"""Memory-mapped, size-checked access to a store's shard files, and their SHA-256 checks.

Mapping a shard costs no memory up front: pages are read on demand and, being clean file
pages, the kernel can drop them again, so reading a store of any size holds bounded memory.
"""

from __future__ import annotations

import hashlib
import mmap
import resource
import threading
from pathlib import Path

import numpy as np

from monosemantic.activations.manifest import StoreError, shard_layout

_HASH_CHUNK = 8 << 20


class MappedShard:
    """The four arrays of one shard (`acts`, `tokens`, `doc_ids`, `positions`), read-only
    views into a memory map of the file."""

    def __init__(self, file: Path, rows: int, d: int, storage_dtype: str):
        spans, size = shard_layout(rows, d, storage_dtype)
        _expect_size(file, size)
        with open(file, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.arrays: dict[str, np.ndarray] = {
            span.name: np.frombuffer(self._map, span.dtype, int(np.prod(span.shape)),
                                     span.offset).reshape(span.shape)
            for span in spans
        }


def check_sizes(path: Path, manifest: dict) -> None:
    """StoreError naming the first shard that is missing or has the wrong size."""
    for shard in manifest["shards"]:
        _, size = shard_layout(shard["rows"], manifest["d"], manifest["dtype"])
        _expect_size(path / shard["file"], size)


def _expect_size(file: Path, size: int) -> None:
    actual = file.stat().st_size if file.exists() else None
    if actual != size:
        raise StoreError(f"shard {file} is missing or truncated: {actual} bytes, expected "
                         f"{size}; harvest the store again (or resume it if unfinished)")


def sha256_error(path: Path, shard: dict) -> StoreError | None:
    """None if the shard's SHA-256 matches the manifest, else the error naming it."""
    file = path / shard["file"]
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != shard["sha256"]:
        return StoreError(f"shard {file} is corrupt: its SHA-256 differs from the manifest's "
                          f"(the file was changed after it was written); harvest it again")
    return None


def allow_open_files(n: int) -> None:
    """Each memory map keeps a file descriptor: raise the soft limit if `n` maps need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(hard, want)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class BackgroundVerifier:
    """Hashes every shard once, in a daemon thread, so reading need not wait for it.

    `error(shards)` returns the first failure among those shards found so far; `wait(shards)`
    returns once those are hashed, hashing any not reached yet in the calling thread (so a
    reader of the last shards does not wait for the whole store). hashlib releases the GIL,
    so the thread overlaps with reading.
    """

    def __init__(self, path: Path, shards: list[dict]):
        self._path, self._shards = path, shards
        self._locks = [threading.Lock() for _ in shards]
        self._done = [False] * len(shards)
        self._errors: dict[int, StoreError] = {}
        self._thread = threading.Thread(target=self._run, daemon=True, name="store-verify")
        self._thread.start()

    def _run(self) -> None:
        for index in range(len(self._shards)):
            self._ensure(index)

    def _ensure(self, index: int) -> None:
        with self._locks[index]:
            if self._done[index]:
                return
            shard = self._shards[index]
            try:
                err = sha256_error(self._path, shard)
            except OSError as os_err:
                err = StoreError(f"shard {self._path / shard['file']} cannot be read: {os_err}")
            if err is not None:
                self._errors[index] = err
            self._done[index] = True

    def error(self, shards: range) -> StoreError | None:
        return next((self._errors[i] for i in shards if i in self._errors), None)

    def wait(self, shards: range) -> StoreError | None:
        for i in shards:
            self._ensure(i)
        return self.error(shards)
