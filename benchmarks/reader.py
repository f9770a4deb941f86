"""Shuffled-reader throughput of an activation store (target: >= 500k rows/s for batches of 4096
rows, d = 640, float16, on a 2-core CPU).

Writes a synthetic store larger than one shard (or reuses `--store`), then times two full
shuffled passes of `ActivationStore.iter_batches` (float32 output, the trainer's default):
the first on a fresh store object (its SHA-256 check runs in the background meanwhile), the
second with the check done. Prints one markdown table row.

    .venv/bin/python benchmarks/reader.py --rows 524288 --shard-rows 131072
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from monosemantic.activations import ActivationStore
from monosemantic.activations.writer import StoreWriter


def write_synthetic(path: Path, rows: int, d: int, dtype: str, shard_rows: int) -> None:
    writer = StoreWriter(path, {"model": "synthetic", "hook": "synthetic"}, d, dtype, shard_rows)
    gen = torch.Generator().manual_seed(0)
    chunk = 16384
    base_ND = torch.randn(chunk, d, generator=gen)
    for b, lo in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - lo)
        ids_N = torch.arange(lo, lo + n)
        writer.append(base_ND[:n] * (1 + b % 7), ids_N % 50_000, ids_N // 256, ids_N % 256,
                      batch=b, first_row=lo)
    writer.finish()


def timed_pass(store: ActivationStore, batch_size: int, seed: int, prefetch: int) -> float:
    start = time.perf_counter()
    rows = 0
    for x_BD in store.iter_batches(batch_size, seed=seed, prefetch=prefetch):
        rows += x_BD.shape[0]
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="existing store to read (default: synthetic)")
    parser.add_argument("--rows", type=int, default=4 * 65536)
    parser.add_argument("--shard-rows", type=int, default=65536)
    parser.add_argument("--d", type=int, default=640)
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--prefetch", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.store
        if path is None:
            path = Path(tmp) / "store"
            write_synthetic(path, args.rows, args.d, args.dtype, args.shard_rows)
        store = ActivationStore(path)
        first = timed_pass(store, args.batch_size, seed=0, prefetch=args.prefetch)
        second = timed_pass(store, args.batch_size, seed=1, prefetch=args.prefetch)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("| rows | shards | d | dtype | batch | 1st pass rows/s (SHA-256 in background) "
              "| 2nd pass rows/s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {store.n_rows:,} | {len(store.manifest['shards'])} | {store.d} | {store.dtype} "
              f"| {args.batch_size} | {first:,.0f} | {second:,.0f} | {peak_mb:,.0f} |")


if __name__ == "__main__":
    main()
