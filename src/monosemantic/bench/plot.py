"""The synthetic benchmark's PNG: matched cosine of each true feature against its frequency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from monosemantic.evals.plots import have_matplotlib
from monosemantic.fsutil import publish, temp_path

ROLE_COLORS = ("#4878a8", "#dd8452", "#55a868", "#c44e52")


def plot_recovery(results: dict[str, dict[str, Any]], frequency_T: torch.Tensor,
                  role_T: torch.Tensor, roles: tuple[str, ...], path: Path) -> Path | None:
    """One panel per architecture (log frequency on x, matched cosine on y, a colour per role
    of the true feature); returns the path, or None (nothing written) when matplotlib is not
    installed."""
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")  # file output only: never needs a display
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), sharey=True, squeeze=False)
    freq = frequency_T.tolist()
    try:
        for ax, (arch, res) in zip(axes[0], results.items()):
            cosine = res["per_feature"]["cosine"]
            for i, role in enumerate(roles):
                pick = (role_T == i).nonzero().squeeze(1).tolist()
                if pick:
                    ax.scatter([freq[j] for j in pick], [cosine[j] for j in pick], s=8,
                               color=ROLE_COLORS[i % len(ROLE_COLORS)], label=role)
            ax.axhline(0.9, color="#c44e52", linewidth=0.8, linestyle="--")
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(f"{arch} (mean {res['recovery']['mean_cosine']:.2f})", fontsize=9)
            ax.set_xlabel("true feature frequency")
        axes[0][0].set_ylabel("matched cosine")
        axes[0][0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)  # a reader never sees half a PNG
        fig.savefig(tmp, dpi=110, format="png")
        publish(tmp, path)
    finally:
        plt.close(fig)
    return path
