"""Harvest throughput vs a bare forward to the same layer (target: >= 90%), and peak RSS.

Loads the model once, harvests `--tokens` rows at `--hook` into a temporary store (the real
pipeline: corpus, tokenization, capture with early stop, special-token filtering, shard
writes with fsync), then runs the same token batches through the model's first L+1 blocks
only (blocks list truncated, no hooks, no unembedding) and compares rows per second. The bare
forward is timed before and after the harvest and averaged, so a drifting machine load biases
neither side. Peak RSS is read right after the harvest; run with two `--tokens` values to see
it does not grow.
Prints one markdown table row.

    .venv/bin/python benchmarks/harvest.py --tokens 16k
    .venv/bin/python benchmarks/harvest.py --tokens 64k
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from monosemantic.activations.harvest import HarvestConfig, harvest_with, resolve_device
from monosemantic.activations.model_rows import context_batches, keep_mask, special_token_ids
from monosemantic.config import parse_count
from monosemantic.data import CorpusConfig
from monosemantic.models import LoadedModel, load_model


@contextmanager
def truncated(lm: LoadedModel, n_blocks: int):
    """The model's base module with only its first `n_blocks` blocks, restored afterwards."""
    parent_path, _, name = lm.blocks_path.rpartition(".")
    parent = lm.model.get_submodule(parent_path)
    blocks = getattr(parent, name)
    setattr(parent, name, torch.nn.ModuleList(list(blocks)[:n_blocks]))
    try:
        yield parent
    finally:
        setattr(parent, name, blocks)


def bare_rows_per_s(lm: LoadedModel, cfg: HarvestConfig, layer: int) -> float:
    """Kept rows per second of a plain forward over the harvest's batches. Only the forwards
    are timed (tokenization is not), and batches are made on the fly (no memory growth)."""
    special = special_token_ids(lm.tokenizer)
    rows, seconds = 0, 0.0
    with truncated(lm, layer + 1) as base, torch.no_grad():
        for batch in context_batches(lm, cfg.corpus, cfg.ctx_len, cfg.batch_size):
            start = time.perf_counter()
            base(input_ids=batch.tokens.to(lm.device), use_cache=False)
            if lm.device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            rows += int(keep_mask(batch, special, cfg.exclude_special).sum())
            if rows >= cfg.tokens:
                break
    return min(rows, cfg.tokens) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--hook", default="blocks.6.hook_resid_post")
    parser.add_argument("--tokens", type=parse_count, default=16384)
    parser.add_argument("--ctx-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    lm = load_model(args.model, device=resolve_device(args.device))
    layer = lm.hook_point(args.hook).layer
    with tempfile.TemporaryDirectory() as tmp:
        cfg = HarvestConfig(out=Path(tmp) / "store", model=args.model, hooks=(args.hook,),
                            tokens=args.tokens, corpus=CorpusConfig(), ctx_len=args.ctx_len,
                            batch_size=args.batch_size, dtype=args.dtype, device=args.device)
        before = bare_rows_per_s(lm, cfg, layer)
        start = time.perf_counter()
        rows = harvest_with(lm, cfg)
        harvest_rate = rows / (time.perf_counter() - start)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    after = bare_rows_per_s(lm, cfg, layer)
    bare_rate = (before + after) / 2
    print("| model | hook | device | tokens | harvest rows/s "
          "| bare forward rows/s (before / after) | harvest / bare | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.model} | {args.hook} | {lm.device} | {rows:,} | {harvest_rate:,.0f} "
          f"| {bare_rate:,.0f} ({before:,.0f} / {after:,.0f}) | {harvest_rate / bare_rate:.1%} "
          f"| {peak_mb:,.0f} |")


if __name__ == "__main__":
    main()
