"""`monosemantic bench RUN [RUN ...] --out OUT`: judge-free benchmark of trained SAEs on their
held-out activations.

A RUN may also be a pretrained SAE folder (SAELens, Gemma Scope, hf:REPO/FOLDER; with --model
and --hook where it does not name them): it comes with no store, so it needs --store, and it is
sampled from --rows or from the store's first row (it trained on none of them).

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
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.bench.compare import bench_markdown, format_table, summary_rows
from monosemantic.bench.config import BenchConfig
from monosemantic.bench.consistency import consistency_pairs, match_decoders
from monosemantic.bench.context import BenchContext, read_sample
from monosemantic.bench.lm import LanguageModels
from monosemantic.bench.metrics import METRICS
from monosemantic.config import ConfigError, to_dict
from monosemantic.console import say
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.evals.report import row_span
from monosemantic.fsutil import fsync_tree, json_ready
from monosemantic.runs import RunDir

if TYPE_CHECKING:
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.models import LoadedModel

BENCH_JSON = "bench.json"
BENCH_MD = "bench.md"
COMPARE_HTML = "compare.html"
FORMAT_VERSION = 1


def run_real_bench(cfg: BenchConfig, lm: LoadedModel | None = None) -> dict[str, Any]:
    """Benchmark `cfg.run`; returns what OUT/bench.json holds. `lm`: a loaded model used for
    every run (its tokenizer decodes the tokens; absorption and neurons run it), else each
    run's model is loaded once per spec when a metric first needs it."""
    checked = check_real(cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        models = LanguageModels(cfg.real.model, str(resolve_device(cfg.device)), lm)
        results = {name: bench_run(run, name, source, cfg, checked.metrics, models)
                   for name, run, source in zip(checked.names, checked.runs, checked.sources)}
        consistency = [match_pair(checked.runs[i], checked.runs[j], checked.names[i],
                                  checked.names[j], cfg) for i, j in checked.pairs]
    finally:
        torch.set_num_threads(threads)
    columns, rows = summary_rows(results)
    report = {"format_version": FORMAT_VERSION, "bench": to_dict(cfg), "runs": checked.names,
              "results": results, "consistency": consistency,
              "table": {"columns": columns, "rows": rows}}
    write_outputs(checked.out, report, columns, rows)
    say(format_table(columns, rows))
    say(f"wrote {checked.out}/ ({BENCH_JSON}, {BENCH_MD}, {COMPARE_HTML}, one folder per run)")
    return report


@dataclass
class SampleSource:
    """Where one run's sample is read: its store and the rows to read from."""

    store: ActivationStore
    rows: range
    """The rows the sample is the first --holdout-tokens of."""
    rows_from: str
    """Why these rows: "held-out rows", "--rows", or "every store row" (an SAE that trained on
    none of the store's rows: a pretrained SAE, a streamed run given --store)."""
    includes_training_rows: bool
    """Whether --rows reaches outside the run's held-out rows (rows it trained on)."""


@dataclass
class Checked:
    """The checked inputs of a benchmark."""

    out: Path
    runs: list[RunDir]
    names: list[str]
    sources: list[SampleSource]
    metrics: list[str]
    pairs: list[tuple[int, int]]


def check_real(cfg: BenchConfig) -> Checked:
    """The benchmark's inputs, every mistake found before anything heavy runs."""
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
    runs = [RunDir.open(path, opts.model, opts.hook) for path in cfg.run]
    for run in runs:
        if run.hook_out is not None:
            # Every metric here compares the codes or the decoder with the site the dictionary
            # reads (reconstruction, probes, absorption); a transcoder writes another site.
            # A pretrained view has no store of both hooks to evaluate on: no command to print.
            how = (f"evaluate it with `monosemantic eval {run.path}`" if run.pretrained is None
                   else "`eval` measures transcoders (docs/transcoders.md)")
            raise UserError(f"{run.path} is a transcoder ({run.hook} -> {run.hook_out}): `bench` "
                            f"measures SAEs, whose output site is their input site; {how}")
    sources = [sample_source(run, opts.store, opts.rows) for run in runs]
    pairs = consistency_pairs(runs, list(opts.pair), opts.model)
    out = Path(opts.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: give a new folder to --out "
                        "(or delete the old benchmark)")
    return Checked(out, runs, unique_names(runs), sources, metric_names, pairs)


def sample_source(run: RunDir, store_path: Path | None, rows: str | None) -> SampleSource:
    """The store and rows `run` is sampled from: --rows, else its held-out rows, else (an SAE
    that trained on none of the store: a pretrained SAE, a streamed run) every store row."""
    if run.pretrained is not None and store_path is None:
        raise UserError(f"{run.pretrained['source']} is a pretrained SAE, which comes with no "
                        f"activation store: give --store STORE, a store of {run.model} at "
                        f"{run.hook} (`monosemantic harvest`), and --rows START:STOP for the "
                        "rows to sample (default: from the store's first row)")
    store = run.store(store_path, alternative="benchmark a run trained on a store")
    holdout = run.holdout_rows
    if rows is not None:
        span = row_span(rows, store.n_rows)
        outside = False
        if holdout is not None and not (holdout.start <= span.start
                                        and span.stop <= holdout.stop):
            outside = True
            say(f"note: --rows {rows} is not within the held-out rows [{holdout.start}, "
                f"{holdout.stop}) of {run.path}: it is measured on rows it trained on")
        return SampleSource(store, span, "--rows", outside)
    if holdout is not None:
        return SampleSource(store, holdout, "held-out rows", False)
    return SampleSource(store, range(store.n_rows), "every store row", False)


def unique_names(runs: list[RunDir]) -> list[str]:
    """Each run's folder name (a pretrained SAE's: its source folder's); a repeated name gets
    -2, -3, ... (first come, plain name)."""
    names: list[str] = []
    for run in runs:
        base = run.name if run.pretrained is None else Path(run.pretrained["folder"]).name
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def bench_run(run: RunDir, name: str, source: SampleSource, cfg: BenchConfig,
              metric_names: list[str], models: LanguageModels) -> dict[str, Any]:
    """Every metric of one run on its sample; what OUT/<name>/bench.json holds."""
    opts = cfg.real
    store = source.store
    sample = read_sample(store, source.rows, opts.holdout_tokens, opts.batch_rows)
    sae = run.load_sae(resolve_device(cfg.device))
    sae.requires_grad_(False)
    spec = models.spec(run)
    say(f"bench {name}: {spec} {run.hook}, F = {run.n_features:,}, {len(sample.rows):,} "
        f"rows ({source.rows_from})")
    ctx = BenchContext(run, sae, sample, opts, models.decoder(run), store,
                       models.loader(run, store.model_dtype), opts.batch_rows)
    metrics = {metric: METRICS[metric](ctx) for metric in metric_names}
    return {"run": str(run.path), "name": name, "model": spec, "hook": run.hook,
            "pretrained": run.pretrained,
            "architecture": run.metadata["sae_config"].get("architecture"),
            "n_features": run.n_features, "d_in": run.d_in,
            "seed": (run.extra.get("train_config") or {}).get("seed"),
            "sample": {"store": str(store.path), "rows": [sample.rows.start, sample.rows.stop],
                       "n_tokens": len(sample.rows), "requested": opts.holdout_tokens,
                       "rows_from": source.rows_from,
                       "includes_training_rows": source.includes_training_rows},
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
    return json.dumps(json_ready(data), indent=1) + "\n"

