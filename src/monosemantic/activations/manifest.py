"""The activation store's on-disk format: `manifest.json`, the shard layout, atomic writes.

A store is a directory::

    manifest.json        header (model, hook, d, dtype, corpus, ...), per-shard rows / bytes /
                         SHA-256 / sum of squared norms, total rows, normalization scale
    shard_00000.bin      one binary file per shard, fixed size (`shard_rows` rows) except the last

A shard file holds four arrays back to back, in `ARRAYS` order, each starting at a multiple of
`ALIGN` bytes (zero padding between): `acts [rows, d]` in the storage dtype (bfloat16 as its raw
uint16 bits, since numpy has no bfloat16), `tokens [rows] int32`, `doc_ids [rows] int64`,
`positions [rows] int32`, all little-endian. Offsets follow from the row count alone
(`shard_layout`), so a shard can be memory-mapped without reading anything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write

FORMAT = "monosemantic.activations"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RECORDS = ".ranks"
"""Folder of a store under distributed harvest that holds the ranks' shard records
(`activations.owned`); gone once the store is complete."""
ALIGN = 64

STORAGE_DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    # name -> (numpy dtype on disk, torch dtype the values have)
    "float16": (np.dtype("<f2"), torch.float16),
    "bfloat16": (np.dtype("<u2"), torch.bfloat16),
    "float32": (np.dtype("<f4"), torch.float32),
}
ARRAYS = ("acts", "tokens", "doc_ids", "positions")
META_DTYPES = {"tokens": np.dtype("<i4"), "doc_ids": np.dtype("<i8"), "positions": np.dtype("<i4")}


class StoreError(UserError):
    """A store that cannot be used as is (missing, corrupt, incomplete, other config)."""


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.bin"


@dataclass(frozen=True)
class ArraySpan:
    name: str
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def shard_layout(rows: int, d: int, storage_dtype: str) -> tuple[list[ArraySpan], int]:
    """Where each array lies in a shard of `rows` rows, and the file size in bytes."""
    acts_dtype = STORAGE_DTYPES[storage_dtype][0]
    spans: list[ArraySpan] = []
    offset = 0
    for name in ARRAYS:
        dtype, shape = (acts_dtype, (rows, d)) if name == "acts" else (META_DTYPES[name], (rows,))
        offset = _align(offset)
        spans.append(ArraySpan(name, offset, dtype, shape))
        offset += spans[-1].nbytes
    return spans, offset


def new_manifest(header: dict[str, Any], d: int, storage_dtype: str, shard_rows: int) -> dict:
    """An empty store's manifest. `header` (model, hook, corpus, ctx_len, ...) must be
    JSON-ready; its keys go at the top level and are listed in `header_keys`, which resuming
    compares one by one."""
    if storage_dtype not in STORAGE_DTYPES:
        raise UserError(f"dtype {storage_dtype!r} is not one of {sorted(STORAGE_DTYPES)}")
    if shard_rows <= 0 or d <= 0:
        raise UserError(f"shard_rows and d must be positive (got {shard_rows}, {d})")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "d": d,
        "dtype": storage_dtype,
        "shard_rows": shard_rows,
        "layout": {"arrays": list(ARRAYS), "align": ALIGN, "acts_disk_dtype":
                   STORAGE_DTYPES[storage_dtype][0].str, **{k: v.str for k, v in
                                                           META_DTYPES.items()}},
        "shards": [],
        "rows": 0,
        "complete": False,
        "norm_scale": None,
        "mean_sq_norm": None,
        "resume": {"batch": 0, "row": 0},
    }
    clash = set(header) & set(manifest)
    if clash:
        raise ValueError(f"header keys {sorted(clash)} are reserved by the manifest")
    return {**manifest, **header, "header_keys": sorted(header)}


def finalize_scale(manifest: dict) -> None:
    """Set `norm_scale` s with E‖s·x‖² = d over all stored rows (float64 sums per shard)."""
    rows = sum(s["rows"] for s in manifest["shards"])
    total = sum(s["sum_sq"] for s in manifest["shards"])
    mean_sq = total / rows if rows else 0.0
    manifest["mean_sq_norm"] = mean_sq
    manifest["norm_scale"] = float(np.sqrt(manifest["d"] / mean_sq)) if mean_sq > 0 else 1.0


def read_manifest(path: Path) -> dict:
    """The manifest of the store at `path`; StoreError when it is missing or not ours."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise StoreError(f"{path} is not an activation store (no {MANIFEST}); "
                         f"create one with `monosemantic harvest --out {path}`")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise StoreError(f"{file} is not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{file} is not a monosemantic activation store manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{file} has format version {manifest.get('format_version')}; this "
                         f"monosemantic reads version {FORMAT_VERSION}: harvest it again")
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace `path/manifest.json` atomically."""
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    atomic_write(Path(path) / MANIFEST, [data])


def remove_temp_files(path: Path) -> None:
    """Delete temp files a crashed writer left behind (ours only: `.NAME.tmp`)."""
    for tmp in Path(path).glob(".*.tmp"):
        tmp.unlink()


def header_differences(manifest: dict, header: dict) -> list[str]:
    """`key: stored -> new` lines for every header entry where `header` differs from the
    header stored in `manifest`."""
    keys = sorted(set(manifest.get("header_keys", [])) | set(header))
    return [f"{k}: {manifest.get(k)!r} -> {header.get(k)!r}" for k in keys
            if manifest.get(k) != header.get(k)]
