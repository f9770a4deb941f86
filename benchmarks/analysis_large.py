"""Feature-sliced analysis of a large dictionary: time and peak memory of the passes + writing.

    .venv/bin/python benchmarks/analysis_large.py                         # F 1,048,576 (long)
    .venv/bin/python benchmarks/analysis_large.py --features 65536 --rows 1024 --feature-slice 16384

A random relu SAE of F features over `--rows` synthetic rows x ~ N(0, 1)^d in random documents
of about 100 tokens: unit-norm encoder columns, so every pre-activation is N(0, 1), and one bias
Φ⁻¹(L0 / F) for all features, so about `--l0` features fire per token whatever F. It runs what
`monosemantic analyze` runs after reading the rows: both passes slice by slice, each slice
written to a feature database (`FeatureDBWriter`), then the co-occurrence neighbours and,
with `--neighbours`, the decoder-cosine neighbours (NN-descent above 32,768 features: long at
1M); no model, so no logit effects. Reports the time of each step, the largest slice's state
against the estimate `slices.slice_bytes`, and the peak RSS of the analysis on top of the SAE
(the SAE's own 8·F·d bytes are reported apart: the peak is reset once the SAE is built, where
Linux allows it).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from analysis import synthetic_rows  # benchmarks/analysis.py: the script's folder is on sys.path
from monosemantic.analysis.cooccur import cooccurrence_neighbours
from monosemantic.analysis.decoder import decoder_neighbours
from monosemantic.analysis.onepass import PassOptions
from monosemantic.analysis.slices import analyze_sliced, choose_slice, slice_bytes
from monosemantic.config import add_dataclass_arguments, dataclass_from_namespace
from monosemantic.featuredb.writer import FeatureDBWriter
from monosemantic.sae import SAEConfig, create_sae


@dataclass
class LargeAnalysisBenchConfig:
    """Time and peak memory of the sliced analysis of a large random relu SAE."""

    features: int = 1_048_576
    """Dictionary size F."""
    d: int = 640
    """Activation width (Gemma 3 270M's)."""
    rows: int = 4096
    """Synthetic rows (tokens) analysed."""
    batch_size: int = 1024
    """Rows per encode."""
    feature_slice: int = 65536
    """Features per slice; 0 = automatic within --max-pass-memory."""
    max_pass_memory: float = 8.0
    """GiB budget of the automatic slice (--feature-slice 0)."""
    l0: float = 64.0
    """Features firing per token on average (sets the bias)."""
    neighbours: bool = False
    """Also compute 10 decoder-cosine neighbours per feature (approximate above 32,768)."""
    threads: int = 0
    """torch threads; 0 = torch's default."""
    out: str | None = None
    """Feature database to write (kept); default a temp file, deleted."""


def random_sae(cfg: LargeAnalysisBenchConfig):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=cfg.d, n_features=cfg.features))
    bias = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(cfg.l0 / cfg.features))
    with torch.no_grad():
        sae.W_enc.div_(sae.W_enc.norm(dim=0, keepdim=True))
        sae.b_enc.fill_(float(bias))
    return sae


def rss_mib(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB (ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: clear_refs 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run(cfg: LargeAnalysisBenchConfig, path: Path) -> None:
    batches = synthetic_rows(cfg.rows, cfg.d, cfg.batch_size)
    start = time.perf_counter()
    sae = random_sae(cfg)
    print(f"SAE F {cfg.features:,} x d {cfg.d} built in {time.perf_counter() - start:.1f} s: "
          f"{8 * cfg.features * cfg.d / 2**30:.2f} GiB of weights, RSS {rss_mib('VmRSS'):,.0f} "
          f"MiB (peak so far {rss_mib('VmHWM'):,.0f})")
    opts = PassOptions()
    size = choose_slice(cfg.features, cfg.feature_slice, cfg.max_pass_memory * 2**30, opts,
                        cfg.batch_size)
    reset = reset_peak_rss()
    base = rss_mib("VmRSS")
    times = {"write": 0.0}

    def write(part) -> None:
        t0 = time.perf_counter()
        writer.add(part)
        times["write"] += time.perf_counter() - t0
        print(f"  slice [{part.feature_lo:,}, {part.feature_lo + part.n_features:,}) "
              f"state {part.nbytes() / 2**20:,.0f} MiB, RSS {rss_mib('VmRSS'):,.0f} MiB")

    with FeatureDBWriter(path) as writer, torch.no_grad():
        t0 = time.perf_counter()
        summary = analyze_sliced(lambda: iter(batches), sae.encode_sparse, cfg.features, size,
                                 opts, on_slice=write)
        times["passes"] = time.perf_counter() - t0 - times["write"]
        t0 = time.perf_counter()
        cooccur = cooccurrence_neighbours(*summary.cooccur_entries(), cfg.features,
                                          opts.cooccur_neighbours, opts.cooccur_min_count)[:2]
        times["cooccur"] = time.perf_counter() - t0
        neighbours = None
        if cfg.neighbours:
            t0 = time.perf_counter()
            neighbours = decoder_neighbours(sae.W_dec.detach(), 10)
            times["neighbours"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        writer.finish({"benchmark": "analysis_large"}, cosine_neighbours=neighbours,
                      cooccur_neighbours=cooccur)
        times["finish"] = time.perf_counter() - t0
    peak = rss_mib("VmHWM")
    l0 = int(summary.count_F.sum()) / summary.n_tokens
    print(f"F {cfg.features:,}, {summary.n_slices} slices of {size:,}, rows {cfg.rows:,}, batch "
          f"{cfg.batch_size:,}, L0 {l0:.1f}, threads {torch.get_num_threads()}")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
          + f"; total {sum(times.values()):.1f} s")
    print(f"state per slice {summary.state_bytes / 2**20:,.0f} MiB (estimate with the dense "
          f"batch {slice_bytes(size, opts, cfg.batch_size) / 2**20:,.0f} MiB); database "
          f"{path.stat().st_size / 2**20:,.0f} MiB")
    what = "since the SAE was built" if reset else "of the whole process (reset not allowed)"
    print(f"peak RSS {peak:,.0f} MiB {what}: {peak - base:,.0f} MiB above the "
          f"{base:,.0f} MiB held before the analysis; load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=LargeAnalysisBenchConfig.__doc__)
    add_dataclass_arguments(parser, LargeAnalysisBenchConfig)
    cfg = dataclass_from_namespace(LargeAnalysisBenchConfig, parser.parse_args())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.out is not None:
        run(cfg, Path(cfg.out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, Path(tmp) / "features.sqlite")


if __name__ == "__main__":
    main()
