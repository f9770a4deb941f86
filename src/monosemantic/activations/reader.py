"""`ActivationStore`: read a harvested store, shuffled (training) or in corpus order (analysis).

Memory stays bounded whatever the store size: shards are memory-mapped, the shuffled order is a
pointwise permutation (no index array), and a background thread keeps at most `prefetch`
batches ready.

Integrity: every shard's size is checked when the store is opened (cheap; catches truncation
and missing files). SHA-256 (which catches altered bytes) costs 1-2 s per GB on one core here,
more than the shuffled reading itself, so it runs in a background thread the first time a store
object is iterated (`verify="background"`, the default): a mismatch is raised, naming the shard,
at the next batch after it is found, and an iteration that runs to its end first waits for the
hashes of the shards it read. `verify="open"` hashes everything before returning from the
constructor, `verify="size"` skips hashing; `verify()` hashes everything on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from monosemantic.activations.manifest import StoreError, read_manifest
from monosemantic.activations.prefetch import prefetched
from monosemantic.activations.shards import (
    BackgroundVerifier,
    MappedShard,
    allow_open_files,
    check_sizes,
    sha256_error,
)
from monosemantic.activations.shuffle import Permutation
from monosemantic.activations.writer import stored_to_torch
from monosemantic.errors import UserError


class RowBatch(NamedTuple):
    """Consecutive store rows with where they came from."""

    acts_ND: Tensor
    tokens_N: Tensor
    """Token id at each row (int64)."""
    doc_ids_N: Tensor
    """Document id (`Document.doc_id`) of each row (int64)."""
    positions_N: Tensor
    """Position of the token in its document (int64): 1, 2, ... for text tokens, 0 for the
    document's BOS, -1 for a BOS inserted at a context start (the last two are stored only
    when harvesting with `exclude_special` off)."""


class ActivationStore:
    """A store directory written by `harvest` (see `manifest.py` for the format)."""

    def __init__(self, path: str | Path,
                 verify: Literal["background", "open", "size"] = "background",
                 allow_incomplete: bool = False):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if not self.manifest["complete"] and not allow_incomplete:
            raise StoreError(f"{self.path} is an unfinished harvest ({self.manifest['rows']:,} "
                             f"rows so far); run the same harvest command again to finish it")
        if verify not in ("background", "open", "size"):
            raise UserError(f"verify must be 'background', 'open' or 'size', not {verify!r}")
        self._shards = self.manifest["shards"]
        self._check_rows()
        check_sizes(self.path, self.manifest)
        allow_open_files(len(self._shards))
        self._maps: dict[int, MappedShard] = {}
        self._verify_mode = verify
        self._verifier: BackgroundVerifier | None = None
        if verify == "open":
            self.verify()

    def _check_rows(self) -> None:
        rows = [s["rows"] for s in self._shards]
        if sum(rows) != self.manifest["rows"] or any(r != self.shard_rows for r in rows[:-1]):
            raise StoreError(f"{self.path}/manifest.json is inconsistent (shard rows {rows}, "
                             f"total {self.manifest['rows']}); harvest the store again")

    # --- metadata -------------------------------------------------------------------------
    @property
    def d(self) -> int:
        return int(self.manifest["d"])

    @property
    def n_rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def shard_rows(self) -> int:
        return int(self.manifest["shard_rows"])

    @property
    def dtype(self) -> str:
        """Storage dtype: `float16`, `bfloat16` or `float32`."""
        return str(self.manifest["dtype"])

    @property
    def model_dtype(self) -> torch.dtype:
        """The dtype the model ran in at harvest (float32 for stores that did not record it);
        a model that should reproduce these rows runs in it."""
        return getattr(torch, str(self.manifest.get("model_dtype", "float32")))

    @property
    def norm_scale(self) -> float:
        """s with E‖s·x‖² = d over all stored rows (computed in float64 at harvest end)."""
        scale = self.manifest.get("norm_scale")
        if scale is None:  # unfinished store opened with allow_incomplete
            total = sum(s["sum_sq"] for s in self._shards)
            return float(np.sqrt(self.d * self.n_rows / total)) if total > 0 else 1.0
        return float(scale)

    @property
    def hook(self) -> str:
        return str(self.manifest.get("hook", ""))

    @property
    def model(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def ctx_len(self) -> int | None:
        return self.manifest.get("ctx_len")

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}: {self.n_rows:,} rows x {self.d} "
                f"{self.dtype}, {self.model} {self.hook})")

    # --- integrity ------------------------------------------------------------------------
    def verify(self) -> None:
        """Check every shard's SHA-256; StoreError naming the first bad shard."""
        check_sizes(self.path, self.manifest)
        for shard in self._shards:
            err = sha256_error(self.path, shard)
            if err is not None:
                raise err

    def _integrity_error(self, shards: range, wait: bool = False) -> StoreError | None:
        if self._verify_mode != "background":
            return None
        if self._verifier is None:
            self._verifier = BackgroundVerifier(self.path, self._shards)
        return self._verifier.wait(shards) if wait else self._verifier.error(shards)

    # --- reading --------------------------------------------------------------------------
    def _shard(self, index: int) -> MappedShard:
        if index not in self._maps:
            self._maps[index] = MappedShard(self.path / self._shards[index]["file"],
                                            self._shards[index]["rows"], self.d, self.dtype)
        return self._maps[index]

    def _row_range(self, rows: range | None) -> range:
        if rows is None:
            return range(self.n_rows)
        if not isinstance(rows, range) or rows.step != 1:
            raise UserError(f"rows must be a range with step 1, e.g. range(0, 1000), not {rows!r}")
        if not 0 <= rows.start <= rows.stop <= self.n_rows:
            raise UserError(f"rows {rows} fall outside the store's {self.n_rows:,} rows")
        return rows

    def _shards_of(self, rows: range) -> range:
        if len(rows) == 0:
            return range(0)
        return range(rows.start // self.shard_rows, (rows.stop - 1) // self.shard_rows + 1)

    def n_batches(self, batch_size: int, rows: range | None = None, shuffle: bool = True) -> int:
        """Batches `iter_batches` yields (a shuffled pass drops the last partial batch)."""
        n = len(self._row_range(rows))
        return n // batch_size if shuffle else -(-n // batch_size)

    def _gather(self, index_N: np.ndarray, name: str) -> np.ndarray:
        """Rows `index_N` (sorted global indices) of array `name`, gathered shard by shard."""
        first = self._shard(0).arrays[name]
        out = np.empty((len(index_N), *first.shape[1:]), first.dtype)
        shard_N = index_N // self.shard_rows
        edges = np.flatnonzero(np.diff(shard_N)) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(index_N)]):
            shard = int(shard_N[lo])
            local = index_N[lo:hi] - shard * self.shard_rows
            np.take(self._shard(shard).arrays[name], local, axis=0, out=out[lo:hi])
        return out

    def _to_tensor(self, stored: np.ndarray, normalize: bool, dtype: torch.dtype) -> Tensor:
        values = stored_to_torch(stored, self.dtype)
        if normalize:
            return (values.to(torch.float32) * self.norm_scale).to(dtype)
        # copy=True: the result must never alias a reused buffer
        return values.to(dtype, copy=True)

    def take(self, index_N: np.ndarray | Tensor | list[int], normalize: bool = False,
             dtype: torch.dtype = torch.float32) -> RowBatch:
        """Rows at arbitrary global indices (returned in the order given)."""
        index_N = np.asarray(index_N, dtype=np.int64)
        if index_N.size and (index_N.min() < 0 or index_N.max() >= self.n_rows):
            raise UserError(f"row indices must lie in [0, {self.n_rows:,})")
        order = np.argsort(index_N, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        sorted_N = index_N[order]
        acts = self._to_tensor(self._gather(sorted_N, "acts")[inverse], normalize, dtype)
        meta = [torch.from_numpy(self._gather(sorted_N, k)[inverse].astype(np.int64))
                for k in ("tokens", "doc_ids", "positions")]
        return RowBatch(acts, *meta)

    def row_meta(self, rows: range | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids, document ids and positions (int64) of `rows` (default: all) without
        reading their activations."""
        span = self._row_range(rows)
        index_N = np.arange(span.start, span.stop)
        tokens, doc_ids, positions = (torch.from_numpy(self._gather(index_N, k).astype(np.int64))
                                      for k in ("tokens", "doc_ids", "positions"))
        return tokens, doc_ids, positions

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0,
                     start_batch: int = 0, normalize: bool = False,
                     dtype: torch.dtype = torch.float32, rows: range | None = None,
                     prefetch: int = 4, part: tuple[int, int] = (0, 1)) -> Iterator[Tensor]:
        """`Tensor[B, D]` batches of activations.

        shuffle: every row of `rows` once, in a random order fixed by `seed` (the last partial
        batch is dropped); each batch is a uniformly random set of rows, gathered in store order
        within the batch for locality. Otherwise consecutive rows, the last batch partial.
        start_batch: skip that many batches at no cost (resume a trainer exactly).
        normalize: multiply by `norm_scale`. rows: a `range` of global row indices (train /
        holdout split). prefetch: batches prepared ahead in a background thread.
        part: (i, n) reads only the i-th of n equal consecutive slices of each batch's rows as
        listed above (data-parallel training: the n parts are the whole batch); `batch_size`
        must be a multiple of n.
        """
        if batch_size <= 0:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        index, n_parts = part
        if batch_size % n_parts or not 0 <= index < n_parts:
            raise ValueError(f"part {part} does not split batches of {batch_size} equally")
        part_size = batch_size // n_parts
        rows = self._row_range(rows)
        total = self.n_batches(batch_size, rows, shuffle)
        if not 0 <= start_batch <= total:
            raise UserError(f"start_batch {start_batch} is outside the pass's {total} batches")
        perm = Permutation(len(rows), seed) if shuffle else None

        def produce() -> Iterator[Tensor]:
            for b in range(start_batch, total):
                positions = np.arange(b * batch_size, min((b + 1) * batch_size, len(rows)))
                index_N = (np.sort(perm[positions]) if perm is not None else positions)
                if n_parts > 1:
                    index_N = index_N[index * part_size:(index + 1) * part_size]
                yield self._to_tensor(self._gather(index_N + rows.start, "acts"), normalize,
                                      dtype)

        yield from self._checked(prefetched(produce(), prefetch, "store-batches"),
                                 self._shards_of(rows))

    def iter_rows(self, batch_size: int, rows: range | None = None, normalize: bool = False,
                  dtype: torch.dtype = torch.float32, prefetch: int = 4) -> Iterator[RowBatch]:
        """Consecutive rows in corpus order with their token ids, document ids and positions."""
        if batch_size <= 0:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        rows = self._row_range(rows)

        def produce() -> Iterator[RowBatch]:
            for lo in range(rows.start, rows.stop, batch_size):
                index_N = np.arange(lo, min(lo + batch_size, rows.stop))
                acts = self._to_tensor(self._gather(index_N, "acts"), normalize, dtype)
                meta = [torch.from_numpy(self._gather(index_N, k).astype(np.int64))
                        for k in ("tokens", "doc_ids", "positions")]
                yield RowBatch(acts, *meta)

        yield from self._checked(prefetched(produce(), prefetch, "store-rows"),
                                 self._shards_of(rows))

    def _checked(self, items: Iterator, shards: range) -> Iterator:
        """Pass `items` through, raising as soon as a shard among `shards` fails its hash; at
        the natural end, wait for those shards' hashes."""
        try:
            for item in items:
                err = self._integrity_error(shards)
                if err is not None:
                    raise err
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # stops the prefetch thread when the consumer quits early
        err = self._integrity_error(shards, wait=True)
        if err is not None:
            raise err

