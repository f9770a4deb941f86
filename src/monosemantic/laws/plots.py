"""PNG figures of one group's laws: loss against compute with the frontier and its law, the
compute-optimal features and tokens, and the optimal lr when it was fitted; bands are the
bootstrap's pointwise percentile intervals. Needs matplotlib (the `plots` extra)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from monosemantic.evals.plots import have_matplotlib
from monosemantic.fsutil import save_figure
from monosemantic.laws.bootstrap import law_band
from monosemantic.laws.lr import at_grid_edge
from monosemantic.laws.powerlaw import PowerLaw


def slug(label: str) -> str:
    """A file-name-safe form of a group label: "topk k=32 d=64" -> "topk-k32-d64"."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9.]+", "-", label.replace("=", ""))).strip("-")


def plot_group(group: dict[str, Any], path: Path) -> Path | None:
    """Draw `group` (a record of scaling.json) to `path`; None without matplotlib."""
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")  # file output only: never needs a display
    import matplotlib.pyplot as plt

    lr = group.get("lr")
    panels = 4 if lr and "exponent" in lr else 3
    rows, cols = (2, 2) if panels == 4 else (1, 3)
    fig, grid_axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows))
    axes = list(np.ravel(grid_axes))
    try:
        lo, hi = group["compute_range"]
        grid = np.geomspace(lo / 2, hi * 4, 80)
        confidence = group["bootstrap"]["confidence"]
        _loss_panel(axes[0], group, grid, confidence)
        _optimum_panel(axes[1], group, "features", "n_features", "features F", grid, confidence)
        _optimum_panel(axes[2], group, "tokens", "tokens", "training tokens D", grid, confidence)
        if panels == 4:
            _lr_panel(axes[3], group, grid, confidence)
        fig.suptitle(f"{group['group']}: {group['metric']}, method {group['method']}, "
                     f"{confidence:.0%} bootstrap bands", fontsize=10)
        # Fixed margins: tight_layout measures every log-axis tick label and took seconds.
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.1 if rows == 2 else 0.14,
                            top=0.9 if rows == 2 else 0.84, wspace=0.3, hspace=0.35)
        path = Path(path)
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _law_line(ax: Any, law: dict[str, Any], grid: np.ndarray, confidence: float,
              label: str, color: str) -> None:
    fitted = PowerLaw(law["log10_coef"], law["exponent"], law["offset"])
    ax.plot(grid, fitted(grid), color=color, label=label)
    band = law_band(law["draws"], grid, confidence)
    if band is not None:
        ax.fill_between(grid, band[0], band[1], color=color, alpha=0.2, linewidth=0)


def _loss_panel(ax: Any, group: dict[str, Any], grid: np.ndarray, confidence: float) -> None:
    pts = group["points"]
    used = [p for p in pts if p["used"]]
    front = [p for p in pts if p["frontier"]]
    ax.scatter([p["flops"] for p in used], [p["loss"] for p in used], s=14, color="#999999",
               label="runs (best lr)")
    ax.scatter([p["flops"] for p in front], [p["loss"] for p in front], s=22, color="#c44e52",
               label="frontier", zorder=3)
    law = group["loss"]
    _law_line(ax, law, grid, confidence, f"fit: exponent {law['exponent']:.3f}", "#c44e52")
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=group["metric"],
           title="loss at the compute-efficient frontier")
    ax.legend(fontsize=8)


def _optimum_panel(ax: Any, group: dict[str, Any], key: str, field: str, name: str,
                   grid: np.ndarray, confidence: float) -> None:
    law = group[key]
    _law_line(ax, law, grid, confidence, f"optimum ∝ C^{law['exponent']:.3f}", "#4878a8")
    front = [p for p in group["points"] if p["frontier"]]
    ax.scatter([p["flops"] for p in front], [p[field] for p in front], s=22,
               color="#c44e52", label="frontier runs", zorder=3)
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=name,
           title=f"compute-optimal {name}")
    ax.legend(fontsize=8)


def _lr_panel(ax: Any, group: dict[str, Any], grid: np.ndarray, confidence: float) -> None:
    lr = group["lr"]
    label = f"fit ∝ C^{lr['exponent']:.3f}"
    if at_grid_edge(lr):
        label += " (to cells at the lr grid's edge: a bound)"
    _law_line(ax, lr, grid, confidence, label, "#55a868")
    inner = [c for c in lr["cells"] if c["interior"]]
    edge = [c for c in lr["cells"] if not c["interior"]]
    ax.scatter([c["flops"] for c in inner], [c["lr"] for c in inner], s=22, color="#55a868",
               label="best lr per cell", zorder=3)
    if edge:
        ax.scatter([c["flops"] for c in edge], [c["lr"] for c in edge], s=22,
                   facecolors="none", edgecolors="#55a868", label="best lr on the grid's edge",
                   zorder=3)
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="learning rate",
           title="optimal learning rate")
    ax.legend(fontsize=8)
