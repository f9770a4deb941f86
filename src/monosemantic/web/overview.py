"""The browser overview's figures from a run's files: training curves (metrics.jsonl), the
training settings shown, eval.json's metrics, the density histogram and the counts of features
that never fired, each with its window. Plain functions of dicts and lists (no database)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from monosemantic.evals.report import trainer_dead

# Keys of metrics.jsonl records plotted on the overview (others stay in the file).
CURVE_KEYS = ("step", "tokens", "loss", "loss_mse", "loss_aux", "nmse", "variance_explained",
              "l0", "dead_fraction", "dead_window_tokens", "dense_fraction",
              "dense_window_tokens", "lr")
# Training-config keys shown on the overview.
TRAIN_KEYS = ("architecture", "n_features", "k", "l1_coefficient", "l0_coefficient", "lr",
              "batch_size", "steps", "total_tokens", "ctx_len", "model", "hook", "store", "seed",
              "dead_window_tokens")


def training_settings(train_cfg: dict[str, Any]) -> dict[str, Any]:
    """The TRAIN_KEYS of a (flattened) training config, without the SAE options its
    architecture ignores (a topk run's l1_coefficient, a relu run's k)."""
    from monosemantic.sae.factory import SAE_CLASSES

    unused: set[str] = set()
    # An architecture this version does not know: show every setting.
    cls = SAE_CLASSES.get(str(train_cfg.get("architecture")))
    if cls is not None:
        unused = {"l1_coefficient", "l0_coefficient"} - {cls.sparsity_coefficient_field}
        if not cls.uses_k:
            unused.add("k")
    return {k: train_cfg[k] for k in TRAIN_KEYS if k in train_cfg and k not in unused}


def read_curves(path: Path) -> dict[str, list[dict[str, float]]]:
    """metrics.jsonl as {split: [record with CURVE_KEYS]}; unreadable lines are skipped (a run
    still training may have a partial last line)."""
    curves: dict[str, list[dict[str, float]]] = {}
    if not path.is_file():
        return curves
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        curves.setdefault(str(rec.get("split", "train")), []).append(
            {k: rec[k] for k in CURVE_KEYS if isinstance(rec.get(k), (int, float))})
    return curves


def density_histogram(densities: list[float], lo: float = -8.0, width: float = 0.25) -> dict:
    """Histogram of log10(density) of the features that fired; those that never fired in
    the analysed tokens counted apart."""
    alive = [d for d in densities if d > 0]
    lo = min([lo, *(math.floor(math.log10(d) / width) * width for d in alive)])
    n_bins = round(-lo / width)
    edges = [lo + i * width for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for d in alive:
        counts[min(int((math.log10(d) - lo) / width), n_bins - 1)] += 1
    return {"log10_edges": edges, "counts": counts, "n_never_fired": len(densities) - len(alive)}


def eval_metrics(evaluation: Any) -> dict[str, Any] | None:
    """eval.json's metrics, every dead / silent / dense figure with its token count. An older
    eval.json called the held-out figure `dead_fraction` (no window): it is shown as what it
    is, silent on its `n_tokens` held-out tokens, or dropped when that count is unknown."""
    metrics = evaluation.get("metrics") if isinstance(evaluation, dict) else None
    if not isinstance(metrics, dict):
        return None
    m = dict(metrics)
    n_tokens = m.get("n_tokens") if isinstance(m.get("n_tokens"), int) else None
    if "dead_fraction" in m and "dead_window_tokens" not in m:
        fraction, n = m.pop("dead_fraction"), m.pop("n_dead", None)
        if n_tokens and "silent_fraction" not in m:
            m.update(silent_fraction=fraction, silent_tokens=n_tokens)
            if n is not None:
                m["n_silent"] = n
    if "dense_fraction" in m and "dense_tokens" not in m:
        if n_tokens:
            m["dense_tokens"] = n_tokens
        else:
            del m["dense_fraction"]
    return m


def never_fired_rows(metrics: dict[str, Any] | None, sae_meta: dict[str, Any],
                     n_features: int, analysed_tokens: int | None,
                     n_never_fired: int) -> list[dict[str, Any]]:
    """The overview's counts of features that never fired, one row per window, each labelled
    with its token count: dead over the trainer's window, dead in the analysis pass, and
    (never called dead: a small sample) silent on the held-out tokens."""
    rows = []
    dead = trainer_dead(sae_meta.get("extra_metadata") or {}, n_features)
    if not dead and metrics and "dead_window_tokens" in metrics:
        dead = {k: metrics[k] for k in ("dead_fraction", "n_dead", "dead_window_tokens")
                if k in metrics}
    if dead:
        tokens = int(dead["dead_window_tokens"])
        rows.append({"key": "training", "dead": True, "tokens": tokens,
                     "n": dead.get("n_dead"), "fraction": dead["dead_fraction"],
                     "label": f"dead (no activation in the last {tokens:,} training tokens)"})
    if analysed_tokens:
        rows.append({"key": "analysis", "dead": True, "tokens": int(analysed_tokens),
                     "n": n_never_fired, "fraction": n_never_fired / n_features,
                     "label": f"never fired in the analysis ({int(analysed_tokens):,} tokens)"})
    if metrics and "silent_fraction" in metrics and metrics.get("silent_tokens"):
        tokens = int(metrics["silent_tokens"])
        rows.append({"key": "held_out", "dead": False, "tokens": tokens,
                     "n": metrics.get("n_silent"), "fraction": metrics["silent_fraction"],
                     "label": f"silent on {tokens:,} held-out tokens"})
    return rows
