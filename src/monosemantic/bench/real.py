"""`monosemantic bench RUN [RUN ...] --out OUT`: judge-free benchmark of trained SAEs on their
held-out activations.

Every input is checked before anything heavy runs (runs finished, stores present, held-out
rows, options, pairs, OUT new or empty). Each run's held-out sample is read, every metric of
`METRICS` computed on it (bench/metrics.py), then the seed-consistency pairs are matched. The
results are written into a staging folder beside OUT, which is renamed to OUT only when all of
it is written: a failed or interrupted benchmark leaves no OUT (nothing half written).

```
OUT/<run name>/bench.json   one run: what was measured on which rows, every metric
OUT/bench.json              all runs, the comparison table, the consistency pairs, the options
OUT/bench.md                the table as markdown (also printed), where each figure came from
OUT/pareto_l0_*.png         L0 against variance explained / loss recovered (with matplotlib)
OUT/compare.html            the compare page: sortable table, plots, probes (self-contained)
```
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.bench.compare import bench_markdown, format_table, summary_rows
from monosemantic.bench.config import BenchConfig
from monosemantic.bench.consistency import consistency_pairs, match_decoders
from monosemantic.bench.context import BenchContext, read_sample
from monosemantic.bench.metrics import METRICS
from monosemantic.config import ConfigError, to_dict
from monosemantic.console import say
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.fsutil import fsync_tree
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

BENCH_JSON = "bench.json"
BENCH_MD = "bench.md"
COMPARE_HTML = "compare.html"
FORMAT_VERSION = 1


def run_real_bench(cfg: BenchConfig, lm: LoadedModel | None = None) -> dict[str, Any]:
    """Benchmark `cfg.run`; returns what OUT/bench.json holds. `lm`: a loaded model whose
    tokenizer decodes every run's tokens (else each run's model is loaded for it)."""
    out, runs, names, metric_names, pairs = check_real(cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        decoders = TokenDecoders(cfg.real.model, lm)
        results = {name: bench_run(run, name, cfg, metric_names, decoders)
                   for name, run in zip(names, runs)}
        consistency = [match_pair(runs[i], runs[j], names[i], names[j], cfg)
                       for i, j in pairs]
    finally:
        torch.set_num_threads(threads)
    columns, rows = summary_rows(results)
    report = {"format_version": FORMAT_VERSION, "bench": to_dict(cfg), "runs": names,
              "results": results, "consistency": consistency,
              "table": {"columns": columns, "rows": rows}}
    write_outputs(out, report, columns, rows)
    say(format_table(columns, rows))
    say(f"wrote {out}/ ({BENCH_JSON}, {BENCH_MD}, {COMPARE_HTML}, one folder per run)")
    return report


def check_real(cfg: BenchConfig) -> tuple[Path, list[RunDir], list[str], list[str],
                                          list[tuple[int, int]]]:
    """(OUT, runs, their names, metric names, consistency pairs), every mistake found first."""
    opts = cfg.real
    if opts.out is None:
        raise UserError("give --out OUT, the folder for the results of `bench RUN ...`")
    opts.validate()
    if cfg.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {cfg.threads}")
    metric_names = list(opts.metrics) or list(METRICS)
    unknown = [m for m in metric_names if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown --metrics {unknown}: choose from {', '.join(METRICS)}")
    runs = [RunDir.open(path) for path in cfg.run]
    for run in runs:
        run.store(opts.store, alternative="benchmark a run trained on a store")
        if run.holdout_rows is None:
            raise UserError(f"{run.path} has no held-out rows (trained on streamed "
                            "activations): the benchmark reads rows no run trained on")
    pairs = consistency_pairs(runs, list(opts.pair))
    out = Path(opts.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: give a new folder to --out "
                        "(or delete the old benchmark)")
    return out, runs, unique_names(runs), metric_names, pairs


def unique_names(runs: list[RunDir]) -> list[str]:
    """Each run's folder name; a repeated name gets -2, -3, ... (first come, plain name)."""
    names: list[str] = []
    for run in runs:
        name, n = run.name, 1
        while name in names:
            n += 1
            name = f"{run.name}-{n}"
        names.append(name)
    return names


class TokenDecoders:
    """Token id -> text per model spec, loading each model once and only when first asked."""

    def __init__(self, override: str | None, lm: LoadedModel | None):
        self.override = override
        self.lm = lm
        self._by_spec: dict[str, Callable[[int], str]] = {}

    def for_run(self, run: RunDir) -> Callable[[int], str]:
        spec = self.override or run.model

        def decode(token: int) -> str:
            if spec not in self._by_spec:
                self._by_spec[spec] = self._load(run, spec)
            return self._by_spec[spec](token)

        return decode

    def _load(self, run: RunDir, spec: str) -> Callable[[int], str]:
        lm = self.lm if self.lm is not None else run.load_model("cpu", spec=spec)
        tokenizer = lm.tokenizer
        return lambda token: tokenizer.decode([token])


def bench_run(run: RunDir, name: str, cfg: BenchConfig, metric_names: list[str],
              decoders: TokenDecoders) -> dict[str, Any]:
    """Every metric of one run on its held-out sample; what OUT/<name>/bench.json holds."""
    opts = cfg.real
    holdout = run.holdout_rows
    assert holdout is not None  # check_real refused runs without held-out rows
    store = run.store(opts.store)
    sample = read_sample(store, holdout, opts.holdout_tokens, opts.batch_rows)
    sae = run.load_sae(resolve_device(cfg.device))
    sae.requires_grad_(False)
    say(f"bench {name}: {run.model} {run.hook}, F = {run.n_features:,}, "
        f"{len(sample.rows):,} held-out rows")
    ctx = BenchContext(run, sae, sample, opts, decoders.for_run(run), opts.batch_rows)
    metrics = {metric: METRICS[metric](ctx) for metric in metric_names}
    return {"run": str(run.path), "name": name, "model": run.model, "hook": run.hook,
            "architecture": run.metadata["sae_config"].get("architecture"),
            "n_features": run.n_features, "d_in": run.d_in,
            "seed": (run.extra.get("train_config") or {}).get("seed"),
            "sample": {"store": str(store.path), "rows": [sample.rows.start, sample.rows.stop],
                       "n_tokens": len(sample.rows), "requested": opts.holdout_tokens},
            "metrics": metrics}


def match_pair(a: RunDir, b: RunDir, name_a: str, name_b: str,
               cfg: BenchConfig) -> dict[str, Any]:
    """The seed-consistency figures of one pair of runs."""
    say(f"matching the decoders of {name_a} and {name_b}")
    result = match_decoders(a.load_sae("cpu").W_dec_FD, b.load_sae("cpu").W_dec_FD,
                            cfg.real.hungarian_max_features)
    return {"a": name_a, "b": name_b, **result}


def write_outputs(out: Path, report: dict[str, Any], columns: list[str],
                  rows: list[list[Any]]) -> None:
    """Write every output into OUT's staging folder, then rename it to OUT."""
    from monosemantic.bench.page import compare_page, plot_pareto

    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted benchmark of the same OUT
    staging.mkdir(parents=True)
    try:
        for name, result in report["results"].items():
            (staging / name).mkdir()
            (staging / name / BENCH_JSON).write_text(_json({**result,
                                                            "bench": report["bench"]}))
        (staging / BENCH_JSON).write_text(_json(report))
        (staging / BENCH_MD).write_text(bench_markdown(report, columns, rows))
        figures = plot_pareto(columns, rows, staging)
        (staging / COMPARE_HTML).write_text(compare_page(report, columns, rows, figures))
        fsync_tree(staging)
        if out.exists():
            out.rmdir()  # checked empty before the benchmark started
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _json(data: Any) -> str:
    return json.dumps(_finite(data), indent=1) + "\n"


def _finite(value: Any) -> Any:
    """Strict JSON: NaN and inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
