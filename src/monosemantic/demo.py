"""`monosemantic demo`: the README's main job, end to end on the embedded default.

Builds the offline corpus, harvests residual activations of Gemma 3 270M at layer 6, trains an
SAE, evaluates it (reconstruction on held-out rows, the model's loss with the SAE spliced in),
prints a summary and writes it as `eval.json` in the run folder. Each step reuses finished work,
so re-running after an interruption picks up where it stopped.

The output folder is one training run (`RunDir`) that also holds the store it was trained on,
`OUT/acts/`, and the demo's options, `OUT/demo_cfg.json`: every command takes `OUT` as its run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from monosemantic.config import save_config, to_dict
from monosemantic.console import say
from monosemantic.runs import RunDir


@dataclass
class DemoConfig:
    """The end-to-end demo: corpus -> harvest -> train -> eval, small defaults for 2 CPU cores."""

    out: Path = Path("runs/demo")
    """The demo's run folder: the training run (cfg.json, sae/, eval.json, features.sqlite, ...)
    with its activation store in acts/; commands take it as RUN."""
    model: str = "gemma-3-270m"
    """Model spec (the embedded default, a local HF directory, a .gguf file or a hub id)."""
    hook: str = "blocks.6.hook_resid_post"
    """Hook point to harvest and train on."""
    tokens: int = 300_000
    """Activations to harvest (rows of the store; 2% are held out for evaluation)."""
    corpus: str = "local-mixed"
    """Text source: local-mixed (offline default: half Python code and docs, half Wikipedia
    summaries, by characters), local-python, local-prose, a .txt/.jsonl/.parquet file or
    folder, hf:NAME."""
    architecture: Literal["relu", "topk", "batchtopk", "jumprelu"] = "topk"
    """SAE architecture. topk by default: in a few hundred CPU steps it meets the quality bar,
    while relu (the Scaling Monosemanticity recipe, made for ~200k steps) does not yet (see the
    README); `--architecture relu` runs the paper's recipe."""
    n_features: int = 4096
    """Dictionary size."""
    k: int = 32
    """Active features per token for topk / batchtopk."""
    l1_coefficient: float = 5.0
    """relu's sparsity coefficient lambda (inputs normalised so E||x||^2 = d)."""
    lr: float = 1e-3
    """Adam learning rate. Higher than the usual defaults (relu 5e-5, topk 2e-4·sqrt(2^14/F)),
    which were tuned for runs of ~100k steps; the CPU demo runs a few hundred."""
    steps: int = 600
    """Optimizer steps (batches of `batch_size` activations; about two passes over the store)."""
    batch_size: int = 1024
    """Activations per optimizer step (smaller than the paper's 4096: more steps per CPU minute)."""
    eval_contexts: int = 16
    """Fresh contexts (not harvested) for the spliced-in loss evaluation."""
    analyze_tokens: int = 100_000
    """Store rows (corpus order) analysed into the feature database; 0 skips the analysis."""
    cards: int = 2
    """Feature cards printed at the end (picked from the feature database)."""
    filter_positive: list[str] = field(default_factory=lambda: [
        "import numpy as np", "import os\nimport sys", "from collections import defaultdict"])
    """Prompts for the multi-prompt filter the demo runs: its top hit's card is printed (on the
    default run this finds an `import` feature)."""
    filter_negative: list[str] = field(default_factory=lambda: [
        "The cat sat on the mat.", "def add(a, b):\n    return a + b", "x = [1, 2, 3]"])
    """Prompts the filter's hits must not fire on."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda, ..."""
    seed: int = 0
    """Seed for corpus order, initialisation and data order."""


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every step (skipping finished ones) and return the evaluation summary."""
    from monosemantic.activations.harvest import HarvestConfig, harvest
    from monosemantic.activations.reader import ActivationStore
    from monosemantic.analysis.run import AnalyzeConfig, analyze
    from monosemantic.analysis.search import FilterConfig, run_filter
    from monosemantic.data import CorpusConfig
    from monosemantic.devices import resolve_device
    from monosemantic.evals.report import EvalConfig, run_eval, write_json
    from monosemantic.featuredb.card import FeatureCardConfig, show_feature
    from monosemantic.models import load_model
    from monosemantic.sae import SAEConfig
    from monosemantic.train.trainer import TrainConfig, train

    out = Path(cfg.out)
    run_dir = RunDir(out)
    # Refused before any work: the nested layout of older versions (naming its run), and a
    # folder that is neither a run nor what may become one.
    if out.exists():
        RunDir.find(out)
    run_dir.check_trainable()
    save_config(cfg, run_dir.demo_cfg_path)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    store = harvest(HarvestConfig(
        out=run_dir.store_dir, model=cfg.model, hooks=(cfg.hook,), tokens=cfg.tokens,
        corpus=CorpusConfig(source=cfg.corpus, seed=cfg.seed), device=cfg.device,
    ))
    timings["harvest_s"] = time.perf_counter() - start

    start = time.perf_counter()
    run = train(TrainConfig(
        out=out, store=Path(store), sae=SAEConfig(
            architecture=cfg.architecture, n_features=cfg.n_features, k=cfg.k,
            l1_coefficient=cfg.l1_coefficient), lr=cfg.lr,
        steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device,
        eval_every=0, checkpoint_every=max(1, cfg.steps // 5), log_every=50,
    ))
    timings["train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    # One model for eval, analyze and the filter (each would load its own), in the dtype the
    # activations were harvested in, as eval needs.
    lm = load_model(cfg.model, device=str(resolve_device(cfg.device)),
                    dtype=ActivationStore(store).model_dtype)
    result = run_eval(EvalConfig(run=Path(run), n_contexts=cfg.eval_contexts, device=cfg.device),
                      lm)
    timings["eval_s"] = time.perf_counter() - start
    if cfg.analyze_tokens > 0:
        start = time.perf_counter()
        db = analyze(AnalyzeConfig(run=Path(run), n_tokens=cfg.analyze_tokens, device=cfg.device),
                     lm)
        timings["analyze_s"] = time.perf_counter() - start
        result["analysis"] = analysis_summary(db)
        for feature in interesting_features(db, cfg.cards):
            show_feature(FeatureCardConfig(run=Path(run), id=feature))
        if cfg.filter_positive:
            say("\nMulti-prompt filter: features on every positive prompt, on no negative one")
            hits = run_filter(FilterConfig(run=Path(run), positive=cfg.filter_positive,
                                           negative=cfg.filter_negative, top=5,
                                           device=cfg.device, model=None), lm)
            if hits:
                show_feature(FeatureCardConfig(run=Path(run), id=hits[0].feature))
    result["training"] = training_summary(RunDir.open(run))
    result["demo"] = {"timings_s": timings, "run": str(run), "store": str(store),
                      "config": to_dict(cfg)}
    # The run's eval.json, with the training summary and the demo's timings added.
    write_json(run_dir.eval_path, result)
    say(summary(result, run_dir, timings))
    return result


def training_summary(run: RunDir) -> dict[str, Any]:
    """The trainer's closing figures (its dead figure and window are also in the metrics)."""
    return dict(run.training)


def analysis_summary(db_path: Path) -> dict[str, Any]:
    """Features that never fired in the analysis pass, with the tokens it read."""
    from monosemantic.featuredb.reader import FeatureDB

    with FeatureDB(db_path) as db:
        never = sum(s["count"] == 0 for s in db.stats())
        return {"tokens": int(db.meta.get("n_tokens") or 0), "n_never_fired": never,
                "never_fired_fraction": never / db.n_features}


def interesting_features(db_path: Path, n: int, max_density: float = 0.01) -> list[int]:
    """Up to `n` features worth a first look: the most frequent ones that are not dense."""
    from monosemantic.featuredb.reader import FeatureDB

    with FeatureDB(db_path) as db:
        stats = [s for s in db.stats() if 0 < s["density"] <= max_density and s["count"] >= 20]
    stats.sort(key=lambda s: s["density"], reverse=True)
    return [int(s["id"]) for s in stats[:n]]


def summary(result: dict[str, Any], run: RunDir, timings: dict[str, float]) -> str:
    """The closing lines: the headline metrics, where the files are, the browser command."""
    m = result["metrics"]
    lines = [
        "",
        f"demo finished in {sum(timings.values()) / 60:.1f} min "
        + "(" + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in timings.items()) + ")",
        f"  L0                 {m['l0']:.1f} active features / token",
        f"  variance explained {m['variance_explained']:.3f}",
        *dead_lines(result),
        f"  loss recovered     {_fmt(m.get('loss_recovered'))}",
        f"  KL (nats)          {_fmt(m.get('kl'))}",
        f"  run                {run.path}",
        f"  activations        {run.store_dir}",
        f"  SAE (SAELens dir)  {run.sae_dir}",
        f"  summary            {run.eval_path}",
        f"  browse             monosemantic serve {run.path}   (then open http://127.0.0.1:8000)",
    ]
    return "\n".join(lines)


def dead_lines(result: dict[str, Any]) -> list[str]:
    """The dead-feature figures, each with the tokens it covers (the trainer's window, the
    analysis pass), then the held-out silence, which a small sample cannot call dead."""
    m, analysis = result["metrics"], result.get("analysis")
    dead = []
    if "dead_window_tokens" in m:
        dead.append(f"{_fmt_pct(m.get('dead_fraction'))} (no activation in the last "
                    f"{m['dead_window_tokens']:,} training tokens)")
    if analysis:
        dead.append(f"{analysis['never_fired_fraction']:.1%} never fired in the analysis "
                    f"({analysis['tokens']:,} tokens)")
    lines = [("  dead features      " if i == 0 else " " * 21) + text
             for i, text in enumerate(dead)]
    if "silent_fraction" in m:
        lines.append(f"  silent features    {m['silent_fraction']:.1%} on the "
                     f"{m['silent_tokens']:,} held-out tokens (a small sample: not dead)")
    return lines


def _fmt_pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
