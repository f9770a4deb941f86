"""Training curves of two sweeps on one store, side by side per dictionary size: each run's
metrics.jsonl (training loss, variance explained on the training batches, L0, dead fraction)
against training tokens, one column per size, one line per run of that size and token budget.
Not a timing: it only reads finished runs. Needs matplotlib (the `plots` extra).

    .venv/bin/python benchmarks/relu_vs_topk.py /tmp/relusweep/relu-sweep \
        runs/findings-sweep --tokens 600k --out docs/findings/relu-curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monosemantic.evals.plots import have_matplotlib
from monosemantic.sweep.record import SweepRecord, read_sweep
from monosemantic.web.overview import read_curves

# (metric key in metrics.jsonl, panel title, log y axis)
ROWS = (
    ("loss", "training loss\n(own objective)", True),
    ("loss_mse", "training MSE", True),
    ("variance_explained", "variance explained\n(training batches,\nclipped at -1)", False),
    ("l0", "L0 (active features\nper token)", True),
    ("dead_fraction", "dead fraction\n(trainer's window)", False),
)
STYLES = ("-", "--", ":", "-.")
COLORS = ("#c0504d", "#e8a33d", "#4878a8", "#6a9a4a")


def parse_count(text: str) -> int:
    """200k -> 200000 (decimal suffixes, as the sweep's --tokens)."""
    scale = {"k": 10**3, "M": 10**6}.get(text[-1:], 1)
    return round(float(text[:-1] if scale > 1 else text) * scale)


def label(rec: SweepRecord, lr_by_size: bool) -> str:
    """Architecture, sparsity and lr of a record, as a legend entry; an lr that follows the
    size (one per size, differing across sizes) would split one series, so it is not shown."""
    sparsity = ", ".join(f"{k} {v:g}" for k, v in rec.sparsity.items())
    lr = ", lr by size" if lr_by_size else f", lr {rec.lr:g}"
    return f"{rec.architecture} ({sparsity}{lr})"


def runs_by_size(sweeps: list[Path], tokens: int) -> dict[int, list[tuple[str, Path]]]:
    """{F: [(legend entry, run folder)]} of the runs that trained about `tokens` tokens."""
    out: dict[int, list[tuple[str, Path]]] = {}
    for sweep in sweeps:
        records = read_sweep(sweep)
        lr_axis = any(r.lr != q.lr for r in records for q in records
                      if r.n_features == q.n_features)
        lr_by_size = not lr_axis and len({r.lr for r in records}) > 1
        for rec in records:
            # Records give steps × batch size: within one batch of the asked budget.
            if abs(rec.tokens - tokens) < rec.batch_size:
                out.setdefault(rec.n_features, []).append(
                    (label(rec, lr_by_size), sweep / rec.run))
    return dict(sorted(out.items()))


def plot(sizes: dict[int, list[tuple[str, Path]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # file output only: never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ROWS), len(sizes), figsize=(3.4 * len(sizes), 2.5 * len(ROWS)),
                             squeeze=False, sharex=True, sharey="row")
    styles: dict[str, tuple[str, str]] = {}
    for col, (n_features, runs) in enumerate(sizes.items()):
        for name, run in runs:
            style, color = styles.setdefault(name, (STYLES[len(styles) % len(STYLES)],
                                                    COLORS[len(styles) % len(COLORS)]))
            train = read_curves(run / "metrics.jsonl").get("train", [])
            xs = [r["tokens"] for r in train]
            for row, (key, _, _) in enumerate(ROWS):
                ys = [r.get(key, float("nan")) for r in train]
                if key == "variance_explained":
                    ys = [max(y, -1.0) for y in ys]
                axes[row][col].plot(xs, ys, style, marker=".", color=color, label=name)
        axes[0][col].set_title(f"F = {n_features}", fontsize=10)
    for row, (_, name, log) in enumerate(ROWS):
        axes[row][0].set_ylabel(name, fontsize=8)
        for ax in axes[row]:
            if log:
                ax.set_yscale("log")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("training tokens", fontsize=8)
    legend = {n: h for ax in axes[0] for h, n in zip(*ax.get_legend_handles_labels())}
    handles, names = list(legend.values()), list(legend)
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders (sweep.jsonl)")
    parser.add_argument("--tokens", default="600k", help="token budget of the runs plotted")
    parser.add_argument("--out", type=Path, required=True, help="PNG written")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args()
    if not have_matplotlib():
        raise SystemExit("needs matplotlib: pip install monosemantic[plots]")
    sizes = runs_by_size(args.sweeps, parse_count(args.tokens))
    if not sizes:
        raise SystemExit(f"no run of about {args.tokens} tokens in {args.sweeps}")
    title = args.title or f"training curves, runs of {args.tokens} tokens"
    plot(sizes, args.out, title)
    for n_features, runs in sizes.items():
        print(f"F = {n_features}: " + "; ".join(f"{name}: {run}" for name, run in runs))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
