"""Synthetic activation rows written by one `StoreWriter` (the reference store of the store
and distributed-harvest tests)."""

from __future__ import annotations

import torch

from monosemantic.activations.writer import StoreWriter

HEADER = {"model": "tiny", "hook": "blocks.0.hook_resid_post", "ctx_len": 8}


def synthetic_batches(n_rows: int, d: int, batch_rows: int, seed: int = 0):
    """(batch index, first row, acts, tokens, doc_ids, positions); column 0 of acts = row index."""
    gen = torch.Generator().manual_seed(seed)
    acts_ND = torch.randn(n_rows, d, generator=gen) * 3
    acts_ND[:, 0] = torch.arange(n_rows, dtype=torch.float32)
    rows_N = torch.arange(n_rows)
    for b, lo in enumerate(range(0, n_rows, batch_rows)):
        hi = min(lo + batch_rows, n_rows)
        yield b, lo, acts_ND[lo:hi], rows_N[lo:hi] % 97, rows_N[lo:hi] // 10, rows_N[lo:hi] % 10


def all_acts(n_rows: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.cat([b[2] for b in synthetic_batches(n_rows, d, n_rows, seed)])


def write_store(path, n_rows=100, d=4, dtype="float32", shard_rows=32, batch_rows=10,
                stop_after_batch=None, header=HEADER):
    """Write a store; with `stop_after_batch`, stop there without finishing (a crash)."""
    writer = StoreWriter(path, header, d, dtype, shard_rows)
    start_batch, _ = writer.resume
    for b, lo, acts, tok, doc, pos in synthetic_batches(n_rows, d, batch_rows):
        if b < start_batch:
            continue
        writer.append(acts, tok, doc, pos, batch=b, first_row=lo)
        if stop_after_batch is not None and b >= stop_after_batch:
            return writer
    writer.finish()
    return writer
