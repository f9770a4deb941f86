"""Feature-analysis throughput: tokens/s of the analysis passes vs the bare SAE encode.

    .venv/bin/python benchmarks/analysis.py                          # F 4096 and 16384
    .venv/bin/python benchmarks/analysis.py --features 4096 --rows 8192   # quick

Synthetic data, in memory (no store I/O is timed): rows x ~ N(0, 1)^d with d = 640 (Gemma 3
270M's width), random documents of 5-200 tokens, a relu SAE with unit-norm encoder columns and
bias `--bias` (about 0.6% density at -2.5: L0 ≈ 25 at F = 4096, 100 at F = 16384). For each F
it times, over the same batches: the bare `sae.encode` of every batch (the floor), pass 1
(statistics, top-K, random and zero examples) and pass 2 (interval counts, samples,
histogram), each including its own encode. Bookkeeping overhead = pass time / encode time - 1
(target < 25% per pass). Also reports the state the passes keep and the peak RSS of the process.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.onepass import PassOptions, interval_pass, stats_pass
from monosemantic.config import add_dataclass_arguments, dataclass_from_namespace
from monosemantic.sae import SAEConfig, create_sae


@dataclass
class AnalysisBenchConfig:
    """Throughput of the analysis passes against the bare SAE encode."""

    features: list[int] = field(default_factory=lambda: [4096, 16384])
    """Dictionary sizes F to measure."""
    rows: int = 32768
    """Rows (tokens) per measurement."""
    batch_size: int = 4096
    """Rows per encode."""
    d: int = 640
    """Activation width."""
    bias: float = -2.5
    """Encoder bias of every feature (sets the density)."""
    threads: int = 0
    """torch threads; 0 = torch's default."""


def synthetic(cfg: AnalysisBenchConfig) -> list[RowBatch]:
    gen = torch.Generator().manual_seed(0)
    x_ND = torch.randn(cfg.rows, cfg.d, generator=gen)
    tokens_N = torch.randint(0, 50_000, (cfg.rows,), generator=gen)
    doc_ids_N = (torch.rand(cfg.rows, generator=gen) < 1 / 100).long().cumsum(0)
    positions_N = torch.zeros(cfg.rows, dtype=torch.int64)
    return [RowBatch(x_ND[i:i + cfg.batch_size], tokens_N[i:i + cfg.batch_size],
                     doc_ids_N[i:i + cfg.batch_size], positions_N[i:i + cfg.batch_size])
            for i in range(0, cfg.rows, cfg.batch_size)]


def measure(cfg: AnalysisBenchConfig, n_features: int, batches: list[RowBatch]) -> dict:
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=cfg.d, n_features=n_features))
    with torch.no_grad():
        sae.W_enc.div_(sae.W_enc.norm(dim=0, keepdim=True))
        sae.b_enc.fill_(cfg.bias)
    encode = sae.encode
    with torch.no_grad():
        encode(batches[0].acts_ND)  # warm-up
        start = time.perf_counter()
        nnz = 0
        for b in batches:
            nnz += int((encode(b.acts_ND) > 0).sum())
        t_encode = time.perf_counter() - start
        opts = PassOptions()
        start = time.perf_counter()
        result = stats_pass(iter(batches), encode, n_features, opts)
        t_pass1 = time.perf_counter() - start
        start = time.perf_counter()
        interval_pass(result, iter(batches), encode)
        t_pass2 = time.perf_counter() - start
    return {"F": n_features, "L0": nnz / cfg.rows, "encode_tok_s": cfg.rows / t_encode,
            "pass1_tok_s": cfg.rows / t_pass1, "pass2_tok_s": cfg.rows / t_pass2,
            "overhead1": t_pass1 / t_encode - 1, "overhead2": t_pass2 / t_encode - 1,
            "state_mib": result.nbytes() / 2**20}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=AnalysisBenchConfig.__doc__)
    add_dataclass_arguments(parser, AnalysisBenchConfig)
    cfg = dataclass_from_namespace(AnalysisBenchConfig, parser.parse_args())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    batches = synthetic(cfg)
    print(f"rows {cfg.rows:,}, batch {cfg.batch_size}, d {cfg.d}, threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'F':>7} {'L0':>6} {'encode tok/s':>13} {'pass1 tok/s':>12} {'pass2 tok/s':>12} "
          f"{'overhead1':>10} {'overhead2':>10} {'state MiB':>10}")
    for n_features in cfg.features:
        r = measure(cfg, n_features, batches)
        print(f"{r['F']:>7} {r['L0']:>6.1f} {r['encode_tok_s']:>13,.0f} {r['pass1_tok_s']:>12,.0f} "
              f"{r['pass2_tok_s']:>12,.0f} {r['overhead1']:>10.1%} {r['overhead2']:>10.1%} "
              f"{r['state_mib']:>10.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
