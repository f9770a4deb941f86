"""PNG figures of the findings (need matplotlib, the `plots` extra): fractions against
dictionary size on a log axis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monosemantic.evals.plots import have_matplotlib
from monosemantic.fsutil import save_figure

COLOURS = ("#4878a8", "#c44e52", "#55a868", "#8172b2", "#ccb974", "#64b5cd")


@contextmanager
def _figure(path: Path, n_panels: int) -> Iterator[list[Any]]:
    import matplotlib

    matplotlib.use("Agg")  # file output only: never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(6.0 * n_panels, 4.2), squeeze=False)
    try:
        yield list(axes[0])
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.86, wspace=0.25)
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def plot_dead(report: dict[str, Any], path: Path) -> Path | None:
    """Dead, silent and ultra-rare fractions against F, per series (left), and the same beside
    the paper's dead fractions on the paper's scale (right); None without matplotlib."""
    if not have_matplotlib():
        return None
    path = Path(path)
    with _figure(path, 2) as (ours, both):
        for ax in (ours, both):
            _dead_lines(ax, report)
        paper = report["paper"]
        both.plot([p["n_features"] for p in paper], [p["dead_fraction"] for p in paper], "x-",
                  color="#555555", markersize=9, label="paper: dead (production model)")
        for p in paper:
            both.annotate(p["quoted"], (p["n_features"], p["dead_fraction"]), fontsize=8,
                          xytext=(4, 4), textcoords="offset points")
        ours.set(xscale="log", xlabel="dictionary size F (features)",
                 ylabel="fraction of features", title="this sweep")
        ours.set_ylim(bottom=0)
        both.set(xscale="log", xlabel="dictionary size F (features)", ylim=(-0.02, 1.02),
                 title="beside the paper's dead fractions (other scale)")
        ours.legend(fontsize=7)
        both.legend(fontsize=7)
    return path


def _dead_lines(ax: Any, report: dict[str, Any]) -> None:
    for n, series in enumerate(report["series"]):
        pts = sorted(series["points"], key=lambda p: (p["n_features"], p["tokens"]))
        xs = [p["n_features"] for p in pts]
        colour = COLOURS[n % len(COLOURS)]
        tag = f"{series['series']}: " if len(report["series"]) > 1 else ""
        dead = [(x, p["dead_fraction"]) for x, p in zip(xs, pts)
                if p["dead_fraction"] is not None]
        if dead:
            ax.plot(*zip(*dead), "o-", color=colour, label=f"{tag}dead (trainer window)")
        ax.plot(xs, [p["silent_fraction"] for p in pts], "s--", color=colour,
                label=f"{tag}silent on held-out tokens")
        ax.plot(xs, [p["ultra_rare_fraction"] for p in pts], "^:", color=colour,
                label=f"{tag}ultra-rare (< {series['rare_threshold']:g})")


def plot_splitting(report: dict[str, Any], path: Path) -> Path | None:
    """Shares of splitting and persisting smaller-SAE features and of appearing larger-SAE
    features against the larger size, for consecutive pairs, one panel per series (solid:
    decoder cosine, dashed: activation correlation); None without matplotlib."""
    if not have_matplotlib():
        return None
    path = Path(path)
    series_list = report["series"]
    with _figure(path, max(1, len(series_list))) as axes:
        for ax, series in zip(axes, series_list):
            sizes = series["sizes"]
            pairs = [p for p in series["pairs"]
                     if sizes.index(p["large"]["n_features"])
                     == sizes.index(p["small"]["n_features"]) + 1]
            xs = [p["large"]["n_features"] for p in pairs]
            for style, measure in (("o-", "decoder"), ("s--", "activation")):
                for colour, side, cls in (("#c44e52", "small", "split"),
                                          ("#4878a8", "small", "persist"),
                                          ("#55a868", "large", "appear")):
                    ys = [p["by"][measure][side]["shares"][cls] for p in pairs]
                    ax.plot(xs, ys, style, color=colour, label=f"{cls} ({measure})")
            ax.set(xscale="log", xlabel="larger dictionary size F", ylabel="share",
                   ylim=(-0.02, 1.02), title=f"{series['series']}: split / persist / appear")
            ax.legend(fontsize=7)
    return path


def plot_concepts(report: dict[str, Any], path: Path) -> Path | None:
    """Covered share of the concepts against their frequency (log axis), one line per size
    (markers: binned shares; dashed: the per-size logistic fit), one panel per series; None
    without matplotlib."""
    if not have_matplotlib():
        return None
    import numpy as np

    from monosemantic.findings.coverage import fitted_share

    path = Path(path)
    series_list = report["series"]
    threshold = report["config"]["coverage"]["cover_threshold"]
    with _figure(path, max(1, len(series_list))) as axes:
        for ax, series in zip(axes, series_list):
            lo, hi = series["fits"]["frequency_span"]
            grid = np.geomspace(lo, hi, 200)
            for n, size in enumerate(series["sizes"]):
                colour = COLOURS[n % len(COLOURS)]
                xs = [b["frequency_mid"] for b in series["curve"]]
                ys = [b["covered_share"][n] for b in series["curve"]]
                ax.plot(xs, ys, "o", color=colour, label=f"F={size:,}")
                fitted = fitted_share(series["fits"]["per_size"][n], grid)
                if fitted is not None:
                    ax.plot(grid, fitted, "--", color=colour)
            ax.set(xscale="log", xlabel="concept frequency (occurrences / held-out token)",
                   ylabel=f"share covered (best F1 ≥ {threshold:g})", ylim=(-0.02, 1.02),
                   title=f"{series['series']}, {series['hook']}: {series['n_concepts']:,} "
                         "concepts")
            ax.legend(fontsize=7, title="dots: binned; dashed: logistic fit",
                      title_fontsize=7)
    return path


def plot_neurons(report: dict[str, Any], path: Path) -> Path | None:
    """Per series, histograms of the features' max |r| with any neuron (one line per run) and
    of the neurons' max |r| with another neuron (grey), with the weak-correlation line; None
    without matplotlib."""
    if not have_matplotlib():
        return None
    import numpy as np

    path = Path(path)
    series_list = report["series"]
    bins = np.linspace(0.0, 1.0, 41)
    with _figure(path, max(1, len(series_list))) as axes:
        for ax, series in zip(axes, series_list):
            neurons = [v for v in series["neurons"]["max_abs_r"] if v is not None]
            if neurons:
                ax.hist(neurons, bins=bins, density=True, color="#bbbbbb",
                        label=f"neuron vs other neurons ({len(neurons):,})")
            for n, p in enumerate(sorted(series["points"], key=lambda p: p["n_features"])):
                values = [v for v in p["per_feature"]["max_abs_r"] if v is not None]
                if not values:
                    continue
                share = p["feature_share_weak"]
                ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.6,
                        color=COLOURS[n % len(COLOURS)],
                        label=f"{p['run']}: features vs neurons ({share:.0%} < "
                              f"{series['weak_r']:g})")
            ax.axvline(series["weak_r"], color="#333333", linestyle="--", linewidth=1)
            ax.set(xlim=(0, 1), xlabel="max |Pearson r|", ylabel="density",
                   title=f"{series['series']}: {series['mlp_hook']}, "
                         f"{series['n_tokens']:,} tokens")
            ax.legend(fontsize=7)
    return path
