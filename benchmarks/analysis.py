"""Feature-analysis throughput: tokens/s of the analysis passes vs the bare SAE encode.

    .venv/bin/python benchmarks/analysis.py                          # F 4096 and 16384
    .venv/bin/python benchmarks/analysis.py --features 4096 --rows 8192   # quick
    .venv/bin/python benchmarks/analysis.py --store runs/demo/acts --sae runs/demo/sae

Data, in memory (no store I/O is timed): with `--store`, the first `--rows` rows of an activation
store (tokens and documents as stored); otherwise synthetic rows x ~ N(0, 1)^d with d = 640
(Gemma 3 270M's width) in random documents of about 100 tokens. SAE: with `--sae RUN`, the
trained SAE of each run for its own F; for other F a relu SAE with unit-norm encoder columns
and bias `--bias` (about 0.6% density at -2.5 on N(0, 1) rows: L0 ≈ 25 at F = 4096, 100 at
F = 16384; real rows have other norms, so set --bias for the density you want). For each F it
times, over the same batches: the bare encode of every batch (the floor: the fastest of
`sae.encode` in whole batches or in the pass's row chunks and `sae.encode_sparse` in those
chunks, in one thread or by the pass's worker threads), pass 1 (statistics, top-K,
random and zero examples, co-occurrence sample) and pass 2 (interval counts, samples,
histogram), each including its own encode, `--repeats` times interleaved (medians).
Bookkeeping overhead = pass time / encode time - 1 (target < 25% per pass), in wall time and in
process CPU time (the CPU-time ratio is the steadier one on a shared machine). Also reports the
state the passes keep and the peak RSS.
"""

from __future__ import annotations

import itertools
import os
import resource
import statistics
import time
from dataclasses import dataclass, field

import torch

from monosemantic.activations.reader import RowBatch
from monosemantic.analysis.codestream import threads_per_worker
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
    """Encoder bias of every feature of a random SAE on synthetic rows (sets the density)."""
    density: float = 0.006
    """Firing density of a random SAE on store rows (its biases are set from the first batch)."""
    threads: int = 0
    """torch threads; 0 = torch's default."""
    repeats: int = 3
    """Interleaved repeats of (encode in whole batches, encode in chunks, pass 1, pass 2);
    medians are reported."""
    store: str | None = None
    """Activation store to read the rows from (else synthetic rows)."""
    sae: list[str] = field(default_factory=list)
    """Training runs whose SAEs to use, each for its own F (repeat the option; other F get a
    random relu SAE)."""
    cooccur: bool = True
    """Keep the co-occurrence row sample in pass 1 (off: the pass as before it existed)."""
    encode_rows: list[int] = field(default_factory=lambda: [0])
    """Values of PassOptions.encode_rows to time (0: automatic chunks; the batch size: whole
    batches, as before chunking existed)."""
    pass_encode: list[str] = field(default_factory=lambda: ["sparse"])
    """How the passes get the codes, each a row: "sparse" (`sae.encode_sparse`, what `analyze`
    runs) or "dense" (`sae.encode`, the codes' nonzeros listed by the pass)."""
    encode_workers: list[int] = field(default_factory=lambda: [0])
    """Values of PassOptions.encode_workers to time, each a row (0: two workers that split
    torch's threads; 1: one thread on all of torch's threads)."""
    encode_ahead: list[int] = field(default_factory=lambda: [1])
    """Values of PassOptions.encode_ahead to time, each a row (1: the next batch is encoded in
    a background thread during the bookkeeping; 0: the two alternate in one thread)."""


def store_rows(cfg: AnalysisBenchConfig) -> list[RowBatch]:
    from monosemantic.activations.reader import ActivationStore

    store = ActivationStore(cfg.store)
    rows = range(min(cfg.rows, store.n_rows))
    cfg.rows, cfg.d = len(rows), store.d
    return list(store.iter_rows(cfg.batch_size, rows=rows))


def synthetic(cfg: AnalysisBenchConfig) -> list[RowBatch]:
    return synthetic_rows(cfg.rows, cfg.d, cfg.batch_size)


def synthetic_rows(n_rows: int, d: int, batch_size: int) -> list[RowBatch]:
    """Rows x ~ N(0, 1)^d with random tokens, in documents of about 100 tokens, batched."""
    gen = torch.Generator().manual_seed(0)
    x_ND = torch.randn(n_rows, d, generator=gen)
    tokens_N = torch.randint(0, 50_000, (n_rows,), generator=gen)
    doc_ids_N = (torch.rand(n_rows, generator=gen) < 1 / 100).long().cumsum(0)
    positions_N = torch.zeros(n_rows, dtype=torch.int64)
    return [RowBatch(x_ND[i:i + batch_size], tokens_N[i:i + batch_size],
                     doc_ids_N[i:i + batch_size], positions_N[i:i + batch_size])
            for i in range(0, n_rows, batch_size)]


def measure(cfg: AnalysisBenchConfig, n_features: int, batches: list[RowBatch],
            ahead: int, encode_rows: int, pass_encode: str, workers: int) -> dict:
    sae = bench_sae(cfg, n_features, batches[0])
    encode = {"sparse": sae.encode_sparse, "dense": sae.encode}[pass_encode]
    opts = PassOptions(cooccur_neighbours=10 if cfg.cooccur else 0, encode_ahead=ahead,
                       encode_rows=encode_rows, encode_workers=workers)
    chunk = opts.chunk_rows(n_features)
    clocks = (time.perf_counter, time.process_time)
    times: dict[str, list[list[float]]] = {"whole": [], "chunks": [], "sparse": [],
                                           "workers": [], "pass1": [], "pass2": []}
    with torch.no_grad():
        sae.encode(batches[0].acts_ND)  # warm-up
        # Interleaved repeats, medians: this machine's speed drifts by +-20% over minutes,
        # so each pass is compared with encodes timed next to it. The floor is the faster of
        # the bare encode in whole batches, in the pass's row chunks, and listed in those
        # chunks (`encode_sparse`, what the pass runs), so no way of encoding hides overhead.
        for _ in range(cfg.repeats):
            times["whole"].append(_time_encode(sae.encode, batches, cfg.batch_size, clocks))
            times["chunks"].append(_time_encode(sae.encode, batches, chunk, clocks))
            times["sparse"].append(_time_encode(sae.encode_sparse, batches, chunk, clocks))
            times["workers"].append(_time_workers(sae.encode_sparse, batches, chunk,
                                                  opts.workers(), clocks)
                                    if opts.workers() > 1 else times["sparse"][-1])
            start = [c() for c in clocks]
            result = stats_pass(iter(batches), encode, n_features, opts)
            times["pass1"].append([c() - s for c, s in zip(clocks, start)])
            start = [c() for c in clocks]
            interval_pass(result, iter(batches), encode)
            times["pass2"].append([c() - s for c, s in zip(clocks, start)])
    med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
    t_encode = min(med["whole"], med["chunks"], med["sparse"], med["workers"],
                   key=lambda t: t[0])
    t_pass1, t_pass2 = med["pass1"], med["pass2"]
    return {"F": n_features, "codes": pass_encode, "ahead": ahead,
            "chunk": min(chunk, cfg.batch_size),
            "L0": int(result.count_F.sum()) / cfg.rows, "encode_tok_s": cfg.rows / t_encode[0],
            "whole_tok_s": cfg.rows / med["whole"][0], "chunks_tok_s": cfg.rows / med["chunks"][0],
            "sparse_tok_s": cfg.rows / med["sparse"][0],
            "workers_tok_s": cfg.rows / med["workers"][0], "workers": opts.workers(),
            "pass1_tok_s": cfg.rows / t_pass1[0], "pass2_tok_s": cfg.rows / t_pass2[0],
            "overhead1": t_pass1[0] / t_encode[0] - 1, "overhead2": t_pass2[0] / t_encode[0] - 1,
            "cpu_overhead1": t_pass1[1] / t_encode[1] - 1,
            "cpu_overhead2": t_pass2[1] / t_encode[1] - 1,
            "state_mib": result.nbytes() / 2**20}


def _time_encode(encode, batches: list[RowBatch], rows: int, clocks) -> list[float]:
    """(wall, CPU) seconds of encoding every batch `rows` rows at a time."""
    start = [c() for c in clocks]
    for b in batches:
        for i in range(0, len(b.acts_ND), rows):
            encode(b.acts_ND[i:i + rows])
    return [c() - s for c, s in zip(clocks, start)]


def _time_workers(encode, batches: list[RowBatch], rows: int, workers: int, clocks
                  ) -> list[float]:
    """(wall, CPU) seconds of encoding every batch `rows` rows at a time by `workers` threads
    that split torch's threads (the pass's workers without the pass)."""
    from concurrent.futures import ThreadPoolExecutor

    threads_each = threads_per_worker(torch.get_num_threads(), workers)
    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                            initargs=(threads_each,)) as pool:
        pool.submit(torch.zeros, 1).result()  # threads started outside the timing
        start = [c() for c in clocks]
        chunks = [b.acts_ND[i:i + rows] for b in batches for i in range(0, len(b.acts_ND), rows)]
        for _codes in pool.map(encode, chunks):
            pass  # dropped as they come, as `_time_encode` does (kept, they fragment the heap)
        return [c() - s for c, s in zip(clocks, start)]


def bench_sae(cfg: AnalysisBenchConfig, n_features: int, first: RowBatch):
    from monosemantic.runs import RunDir

    for run in cfg.sae:
        sae = RunDir.open(run).load_sae()
        if int(sae.cfg.n_features) == n_features:
            return sae
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=cfg.d, n_features=n_features))
    with torch.no_grad():
        sae.W_enc.div_(sae.W_enc.norm(dim=0, keepdim=True))
        sae.b_enc.fill_(cfg.bias)
        if cfg.store:
            # Real rows: per-feature bias at the (1 - density) quantile of the first batch.
            sae.b_enc.zero_()
            pre_BF = sae.pre_acts(first.acts_ND[:2048])
            sae.b_enc.copy_(-torch.quantile(pre_BF, 1 - cfg.density, dim=0))
    return sae


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=AnalysisBenchConfig.__doc__)
    add_dataclass_arguments(parser, AnalysisBenchConfig)
    cfg = dataclass_from_namespace(AnalysisBenchConfig, parser.parse_args())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    batches = store_rows(cfg) if cfg.store else synthetic(cfg)
    print(f"rows {cfg.rows:,} ({cfg.store or 'synthetic'}), batch {cfg.batch_size}, d {cfg.d}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}")
    header = (f"{'F':>7} {'codes':>6} {'wkrs':>4} {'ahead':>5} {'chunk':>5} {'L0':>6} "
              f"{'whole tok/s':>12} {'chunks tok/s':>13} {'sparse tok/s':>13} "
              f"{'workers tok/s':>14} {'pass1 tok/s':>12} {'pass2 tok/s':>12} "
              f"{'overhead1':>10} {'overhead2':>10} {'cpu ovh1':>9} {'cpu ovh2':>9} "
              f"{'state MiB':>10}")
    print(header)
    for n_features, ahead, rows, codes, workers in itertools.product(
            cfg.features, cfg.encode_ahead, cfg.encode_rows, cfg.pass_encode,
            cfg.encode_workers):
        r = measure(cfg, n_features, batches, ahead, rows, codes, workers)
        print(f"{r['F']:>7} {r['codes']:>6} {r['workers']:>4} {r['ahead']:>5} {r['chunk']:>5} "
              f"{r['L0']:>6.1f} "
              f"{r['whole_tok_s']:>12,.0f} {r['chunks_tok_s']:>13,.0f} "
              f"{r['sparse_tok_s']:>13,.0f} {r['workers_tok_s']:>14,.0f} "
              f"{r['pass1_tok_s']:>12,.0f} {r['pass2_tok_s']:>12,.0f} {r['overhead1']:>10.1%} "
              f"{r['overhead2']:>10.1%} {r['cpu_overhead1']:>9.1%} {r['cpu_overhead2']:>9.1%} "
              f"{r['state_mib']:>10.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB; load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
