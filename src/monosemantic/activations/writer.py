"""`StoreWriter`: appends activation rows to a store, one complete shard at a time.

Rows are buffered in memory until a shard is full (`shard_rows` rows; the memory held is one
shard per writer, whatever the run length); the shard is then written to a temp file, fsynced
and renamed, and only after that is the manifest (also atomically) updated to list it. A crash
therefore leaves the store at its last committed shard, and the manifest's `resume` entry says
which batch of the harvest to run again (and how many of its rows are already stored).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from monosemantic.activations.manifest import (
    MANIFEST,
    RECORDS,
    STORAGE_DTYPES,
    StoreError,
    finalize_scale,
    header_differences,
    new_manifest,
    read_manifest,
    remove_temp_files,
    shard_layout,
    shard_name,
    write_manifest,
)
from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write


def to_storage(acts_ND: Tensor, storage_dtype: str, what: str = "activations") -> np.ndarray:
    """`acts_ND` as the numpy array written to disk (bfloat16 as raw uint16 bits).

    Raises UserError when values overflow the storage dtype (float16 tops out at 65504).
    """
    torch_dtype = STORAGE_DTYPES[storage_dtype][1]
    stored_ND = acts_ND.detach().to(torch_dtype)
    if not bool(torch.isfinite(stored_ND).all()):
        if bool(torch.isfinite(acts_ND).all()):
            biggest = float(acts_ND.abs().max())
            raise UserError(f"{what} reach |x| = {biggest:.4g}, beyond {storage_dtype}'s range; "
                            f"use --dtype bfloat16 or --dtype float32")
        raise UserError(f"{what} contain NaN or infinity (the model's own output); check the "
                        f"model and its dtype (try --model-dtype float32)")
    stored_ND = stored_ND.cpu().contiguous()
    if storage_dtype == "bfloat16":
        return stored_ND.view(torch.int16).numpy().view(STORAGE_DTYPES["bfloat16"][0])
    return stored_ND.numpy()


def stored_to_torch(array: np.ndarray, storage_dtype: str) -> Tensor:
    """Inverse of `to_storage`: a torch tensor (sharing memory) with the stored values."""
    if storage_dtype == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


class ShardBuffer:
    """The rows of one shard being filled (at most `shard_rows`), written as one shard file."""

    def __init__(self, shard_rows: int, d: int, dtype: str):
        self.shard_rows, self.d, self.dtype = shard_rows, d, dtype
        self._arrays: dict[str, np.ndarray] | None = None
        self.fill = 0
        """Rows held."""
        self._sum_sq = 0.0

    def put(self, stored_ND: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        """Append rows (`to_storage` output and their tokens, doc_ids, positions)."""
        if self._arrays is None:
            spans, _ = shard_layout(self.shard_rows, self.d, self.dtype)
            self._arrays = {s.name: np.zeros(s.shape, s.dtype) for s in spans}
        lo, hi = self.fill, self.fill + len(stored_ND)
        self._arrays["acts"][lo:hi] = stored_ND
        for name, values in meta.items():
            self._arrays[name][lo:hi] = values
        values_ND = stored_to_torch(stored_ND, self.dtype)
        self._sum_sq += float(values_ND.double().square().sum())
        self.fill = hi

    def write(self, path: Path, index: int) -> dict:
        """Write the rows held as `path/shard_<index>` (atomically), empty the buffer and
        return the shard's manifest entry."""
        rows = self.fill
        assert self._arrays is not None  # written only after `put` filled rows
        spans, size = shard_layout(rows, self.d, self.dtype)
        chunks: list[bytes | memoryview] = []
        offset = 0
        for span in spans:
            chunks.append(bytes(span.offset - offset))
            array = np.ascontiguousarray(self._arrays[span.name][:rows])
            chunks.append(array.data.cast("B"))
            offset = span.offset + span.nbytes
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        atomic_write(path / shard_name(index), chunks)
        entry = {"file": shard_name(index), "rows": rows, "bytes": size,
                 "sha256": digest.hexdigest(), "sum_sq": self._sum_sq}
        self.fill, self._sum_sq = 0, 0.0
        return entry

    def release(self) -> None:
        """Free the arrays (a later `put` allocates them again)."""
        self._arrays = None


class StoreWriter:
    """Writes (or resumes) the store at `path`.

    `header` holds what identifies the harvest (model, hook, corpus, ctx_len, ...); resuming a
    store whose header, `d`, `dtype` or `shard_rows` differ raises StoreError listing the
    differences.
    """

    def __init__(self, path: Path, header: dict[str, Any], d: int, dtype: str = "float16",
                 shard_rows: int = 65536):
        self.path = Path(path)
        self.d, self.dtype, self.shard_rows = d, dtype, shard_rows
        fresh = new_manifest(header, d, dtype, shard_rows)
        if (self.path / MANIFEST).exists():
            self.manifest = read_manifest(self.path)
            self._check_same(fresh, header)
            remove_temp_files(self.path)
            self._check_shard_files()
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path} exists, is not empty and holds no activation "
                                 f"store; pick a new --out directory")
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = fresh
            write_manifest(self.path, self.manifest)
        self._buffer = ShardBuffer(shard_rows, d, dtype)

    def _check_same(self, fresh: dict, header: dict) -> None:
        diffs = header_differences(self.manifest, header)
        diffs += [f"{k}: {self.manifest[k]!r} -> {fresh[k]!r}" for k in ("d", "dtype", "shard_rows")
                  if self.manifest[k] != fresh[k]]
        if diffs:
            raise StoreError(f"{self.path} holds a harvest with another configuration:\n  "
                             + "\n  ".join(diffs)
                             + "\nUse the same options to resume it, or a new --out directory.")

    def _check_shard_files(self) -> None:
        for shard in self.manifest["shards"]:
            file = self.path / shard["file"]
            size = file.stat().st_size if file.exists() else None
            if size != shard["bytes"]:
                raise StoreError(f"shard {file} is missing or has {size} bytes instead of "
                                 f"{shard['bytes']}; the store is damaged, harvest it again")

    @property
    def rows(self) -> int:
        """Rows committed to disk (listed in the manifest)."""
        return int(self.manifest["rows"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def resume(self) -> tuple[int, int]:
        """(batch index, global row index of that batch's first row) to restart from."""
        return int(self.manifest["resume"]["batch"]), int(self.manifest["resume"]["row"])

    def append(self, acts_ND: Tensor, tokens_N: Tensor, doc_ids_N: Tensor, positions_N: Tensor,
               batch: int, first_row: int) -> None:
        """Add the rows of harvest batch `batch`, whose first row has global index `first_row`.

        Rows this store already holds (when resuming, or when another hook's store is behind)
        are skipped, so every writer can be fed the same batches.
        """
        if self.complete:
            raise StoreError(f"{self.path} is already complete")
        n = len(acts_ND)
        next_row = self.rows + self._buffer.fill
        if first_row > next_row:
            raise ValueError(f"rows {next_row}..{first_row} were never appended")
        skip = next_row - first_row
        if skip >= n:
            return
        stored_ND = to_storage(acts_ND[skip:], self.dtype, f"activations of batch {batch}")
        meta = {"tokens": tokens_N, "doc_ids": doc_ids_N, "positions": positions_N}
        meta_np = {k: v[skip:].detach().cpu().numpy() for k, v in meta.items()}
        done = 0
        while done < n - skip:
            take = min(self.shard_rows - self._buffer.fill, n - skip - done)
            self._buffer.put(stored_ND[done:done + take], {k: v[done:done + take]
                                                           for k, v in meta_np.items()})
            done += take
            if self._buffer.fill == self.shard_rows:
                consumed = skip + done
                resume = (batch, first_row) if consumed < n else (batch + 1, first_row + n)
                self._commit(resume)

    def _commit(self, resume: tuple[int, int]) -> None:
        index = len(self.manifest["shards"])
        self.manifest["shards"].append(self._buffer.write(self.path, index))
        self.manifest["rows"] = self.rows + self.manifest["shards"][-1]["rows"]
        self.manifest["resume"] = {"batch": resume[0], "row": resume[1]}
        write_manifest(self.path, self.manifest)

    def finish(self) -> dict:
        """Commit the last (partial) shard, set the normalization scale, mark complete."""
        if self.complete:
            return self.manifest
        if self._buffer.fill:
            self._commit(self.resume)
        if self.rows == 0:
            raise StoreError(f"no rows were harvested into {self.path}: the corpus gave no "
                             f"tokens (all special?); check --corpus.source")
        finalize_scale(self.manifest)
        self.manifest["complete"] = True
        write_manifest(self.path, self.manifest)
        # Records of a distributed harvest this process resumed (and redid from its manifest).
        shutil.rmtree(self.path / RECORDS, ignore_errors=True)
        self._buffer.release()
        return self.manifest
