"""The feature-density histogram as a PNG; needs the optional `plots` extra (matplotlib)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from monosemantic.fsutil import save_figure


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (`pip install monosemantic[plots]`)."""
    return importlib.util.find_spec("matplotlib") is not None


def plot_density_histogram(hist: dict[str, Any], path: Path, title: str = "") -> Path | None:
    """Draw `FeatureDensityAccumulator.log10_histogram()` output to `path`.

    Returns the path, or None (nothing written) when matplotlib is not installed.
    """
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")  # file output only: never needs a display
    import matplotlib.pyplot as plt

    edges, counts = hist["bin_edges"], hist["counts"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    try:
        widths = [hi - lo for lo, hi in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4878a8", edgecolor="white")
        ax.set_xlabel("log10(feature firing frequency)")
        ax.set_ylabel("features")
        # Silent on a sample is not dead: the count says on how many tokens it was measured.
        summary = (f"{sum(counts):,} fired, {hist['n_silent']:,} silent on the "
                   f"{hist['n_tokens']:,} tokens evaluated (not shown)")
        ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=10)
        fig.tight_layout()
        path = Path(path)
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return path
