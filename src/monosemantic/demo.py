"""`monosemantic demo`: the README's main job, end to end on the embedded default.

Builds the offline corpus, harvests residual activations of Gemma 3 270M at layer 6, trains an
SAE, evaluates it (reconstruction on held-out rows, the model's loss with the SAE spliced in),
prints a summary and writes it as `eval.json` in the run folder. Each step reuses finished work,
so re-running after an interruption picks up where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from monosemantic.config import save_config, to_dict


@dataclass
class DemoConfig:
    """The end-to-end demo: corpus -> harvest -> train -> eval, small defaults for 2 CPU cores."""

    out: Path = Path("runs/demo")
    """Folder for everything the demo writes: acts/ (the activation store) and sae/ (the run)."""
    model: str = "gemma-3-270m"
    """Model spec (the embedded default, a local HF directory, a .gguf file or a hub id)."""
    hook: str = "blocks.6.hook_resid_post"
    """Hook point to harvest and train on."""
    tokens: int = 300_000
    """Activations to harvest (rows of the store; 2% are held out for evaluation)."""
    corpus: str = "local-python"
    """Text source: local-python (offline default), a .txt/.jsonl/.parquet file or folder, hf:NAME."""
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
    from monosemantic.models import load_model
    from monosemantic.featuredb.card import FeatureCardConfig, show_feature
    from monosemantic.sae import SAEConfig
    from monosemantic.train.trainer import TrainConfig, train

    out = Path(cfg.out)
    save_config(cfg, out / "demo_cfg.json")
    timings: dict[str, float] = {}

    start = time.perf_counter()
    store = harvest(HarvestConfig(
        out=out / "acts", model=cfg.model, hooks=(cfg.hook,), tokens=cfg.tokens,
        corpus=CorpusConfig(source=cfg.corpus, seed=cfg.seed), device=cfg.device,
    ))
    timings["harvest_s"] = time.perf_counter() - start

    start = time.perf_counter()
    run = train(TrainConfig(
        out=out / "sae", store=Path(store), sae=SAEConfig(
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
        for feature in interesting_features(db, cfg.cards):
            show_feature(FeatureCardConfig(run=Path(run), id=feature))
        if cfg.filter_positive:
            print("\nMulti-prompt filter: features on every positive prompt, on no negative one")
            hits = run_filter(FilterConfig(run=Path(run), positive=cfg.filter_positive,
                                           negative=cfg.filter_negative, top=5,
                                           device=cfg.device, model=None), lm)
            if hits:
                show_feature(FeatureCardConfig(run=Path(run), id=hits[0].feature))
    result["training"] = training_summary(Path(run))
    result["demo"] = {"timings_s": timings, "run": str(run), "store": str(store),
                      "config": to_dict(cfg)}
    write_json(out / "eval.json", result)
    print(summary(result, out, timings))
    return result


def training_summary(run: Path) -> dict[str, Any]:
    """The trainer's closing figures (incl. its dead-feature count) and its dead window."""
    from monosemantic.sae import read_metadata

    extra = read_metadata(run / "sae").get("extra_metadata", {})
    training = dict(extra.get("training", {}))
    training["dead_window_tokens"] = extra.get("train_config", {}).get("dead_window_tokens", 0)
    return training


def interesting_features(db_path: Path, n: int, max_density: float = 0.01) -> list[int]:
    """Up to `n` features worth a first look: the most frequent ones that are not dense."""
    from monosemantic.featuredb.reader import FeatureDB

    with FeatureDB(db_path) as db:
        stats = [s for s in db.stats() if 0 < s["density"] <= max_density and s["count"] >= 20]
    stats.sort(key=lambda s: s["density"], reverse=True)
    return [int(s["id"]) for s in stats[:n]]


def summary(result: dict[str, Any], out: Path, timings: dict[str, float]) -> str:
    """The closing lines: the headline metrics and where the files are."""
    m = result["metrics"]
    train = result.get("training", {}).get("final_train", {})
    window = result.get("training", {}).get("dead_window_tokens", 0)
    lines = [
        "",
        f"demo finished in {sum(timings.values()) / 60:.1f} min "
        + "(" + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in timings.items()) + ")",
        f"  L0                 {m['l0']:.1f} active features / token",
        f"  variance explained {m['variance_explained']:.3f}",
        (f"  dead features      {_fmt_pct(train.get('dead_fraction'))} (no activation in the "
         f"last {window:,} training tokens); {m['dead_fraction']:.1%} silent on the "
         f"{result['sizes'].get('reconstruction_tokens', 0):,} held-out tokens"),
        f"  loss recovered     {_fmt(m.get('loss_recovered'))}",
        f"  KL (nats)          {_fmt(m.get('kl'))}",
        f"  activations        {out / 'acts'}",
        f"  SAE (SAELens dir)  {out / 'sae' / 'sae'}",
        f"  summary            {out / 'eval.json'}",
        f"  browse             monosemantic serve {out}   (then open http://127.0.0.1:8000)",
    ]
    return "\n".join(lines)


def _fmt_pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
