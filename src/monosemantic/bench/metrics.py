"""The per-run metrics of `monosemantic bench RUN ...`: one function each, one `METRICS` entry.

Contract (docs/bench.md, "Adding a metric"): a metric is a function `fn(ctx: BenchContext) ->
dict` registered under its name in `METRICS`. It reads what it needs from the context (the run,
its SAE, the held-out sample, its codes `ctx.f_NF` and reconstructions `ctx.x_hat_ND`, token
texts and probing labels, eval.json, the store, the language model `ctx.lm`, the options) and
returns a JSON-ready dict, stored as `bench.json["metrics"][name]`. Its optional key
`"summary"` maps column names to numbers (or None): those go into the comparison table, page
and plots, so they must be unique across metrics. A user mistake raises `UserError`; any
error aborts the benchmark with nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monosemantic.bench.context import BenchContext
from monosemantic.bench.extras import (
    decoder_redundancy,
    firing_shares,
    reconstruction_bias,
    sample_reconstruction,
    shrinkage,
)
from monosemantic.bench.probing import balanced_split, probe_task
from monosemantic.progress import progress

MetricFn = Callable[[BenchContext], dict[str, Any]]


def core_extras(ctx: BenchContext) -> dict[str, Any]:
    """Shrinkage, relative reconstruction bias, firing shares and decoder redundancy on the
    held-out sample."""
    x_ND = ctx.sample.acts_ND
    shrink = shrinkage(x_ND, ctx.x_hat_ND)
    bias = reconstruction_bias(x_ND, ctx.x_hat_ND)
    shares = firing_shares(ctx.f_NF)
    redundancy = decoder_redundancy(ctx.sae.W_dec_FD)
    return {"shrinkage": shrink, "bias": bias, "firing": shares, "decoder": redundancy,
            "summary": {"norm_ratio": shrink["mean_norm_ratio"],
                        "rel_recon_bias": bias["relative_reconstruction_bias"],
                        "share_over_1pct": shares["share_firing_over_1pct"],
                        "share_over_10pct": shares["share_firing_over_10pct"],
                        "max_dec_cos": redundancy["max_cosine"],
                        "mean_max_dec_cos": redundancy["mean_max_cosine"]}}


def reconstruction(ctx: BenchContext) -> dict[str, Any]:
    """L0, variance explained and loss recovered: eval.json's figures where it has them (its
    held-out rows, its spliced contexts), the bench sample's otherwise (no loss recovered
    then); `source` says which."""
    sample = sample_reconstruction(ctx.sample.acts_ND, ctx.x_hat_ND, ctx.f_NF)
    evaluated = ctx.eval_report.get("metrics") or {}
    summary, source = {}, {}
    for name in ("l0", "variance_explained", "loss_recovered"):
        if evaluated.get(name) is not None:
            summary[name], source[name] = float(evaluated[name]), "eval.json"
        elif name in sample:
            summary[name], source[name] = sample[name], "bench sample"
        else:
            summary[name], source[name] = None, "missing: run `monosemantic eval RUN`"
    return {"sample": sample, "eval_json": {k: evaluated.get(k) for k in summary},
            "source": source, "summary": summary}


def sparse_probing(ctx: BenchContext) -> dict[str, Any]:
    """Per task (bench/tasks.py), the k-feature probes' and the raw probe's test accuracy."""
    opts = ctx.opts
    labels = ctx.labels
    splits = {task: balanced_split(labels.by_task[task], task, opts.max_per_class,
                                   opts.min_per_class, opts.test_fraction, opts.sample_seed)
              for task in opts.tasks}
    tasks = {}
    with progress(total=len(opts.tasks), desc=f"probe {ctx.run.name}", unit="task") as bar:
        for task in opts.tasks:
            tasks[task] = probe_task(ctx.f_NF, ctx.sample.acts_ND, splits[task], opts.ks,
                                     opts.sample_seed)
            neg, pos = labels.counts(task)
            tasks[task].update(available_negative=neg, available_positive=pos)
            bar.update(1)
    summary = {f"probe_k{k}": _mean([t["sae"][str(k)]["accuracy"] for t in tasks.values()])
               for k in opts.ks}
    summary["probe_raw"] = _mean([t["raw_accuracy"] for t in tasks.values()])
    return {"tasks": tasks, "labelled_tokens": labels.n_labelled, "summary": summary}


def absorption(ctx: BenchContext) -> dict[str, Any]:
    """Feature absorption on first-letter tasks (bench/absorption.py), with the run's language
    model on `--absorption-words` words; its caveat says when the model is too small to
    trust."""
    from monosemantic.bench.absorption import AbsorptionConfig, measure_absorption
    from monosemantic.runs import RunModel

    cfg = AbsorptionConfig(n_words=ctx.opts.absorption_words)
    result = measure_absorption(RunModel(ctx.lm, ctx.sae, ctx.run.hook), cfg)
    return {**result, "summary": {
        "absorption_fraction": result["mean_absorption_fraction"],
        "full_absorption": result["mean_full_absorption_rate"],
        "letter_probe_f1": result["mean_probe_f1"],
        "letter_main_f1": result["mean_main_features_f1"]}}


def neurons(ctx: BenchContext) -> dict[str, Any]:
    """Features against the MLP neurons beside the hook (findings/neuron_corr.py) on the first
    `--neuron-tokens` rows of the sample, which the language model computes again over the
    store's own contexts (the replay's error against the stored rows is reported)."""
    from monosemantic.findings.neuron_corr import measure_store

    rows = ctx.sample.rows
    rows = range(rows.start, min(rows.stop, rows.start + ctx.opts.neuron_tokens))
    (result,) = measure_store(ctx.lm, [ctx.sae], ctx.run.hook, ctx.store, rows,
                              ctx.opts.mlp_layer, ctx.opts.neuron_weak_r,
                              desc=f"neurons {ctx.run.name}")
    summary = result.summary()
    return {**summary, "rows": [rows.start, rows.stop], "summary": {
        "feat_share_weak_r": summary["feature_share_weak"],
        "feat_median_max_r": summary["feature_median_max_abs_r"],
        "neuron_share_weak_r": summary["neuron_share_weak"]}}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


METRICS: dict[str, MetricFn] = {
    "reconstruction": reconstruction,
    "core": core_extras,
    "sparse_probing": sparse_probing,
    "absorption": absorption,
    "neurons": neurons,
}
"""Every per-run metric, by name (the order of bench.json and the table)."""
