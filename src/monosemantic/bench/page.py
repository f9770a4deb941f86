"""The compare page and Pareto plots of `bench RUN ...`: PNGs (matplotlib, the `plots` extra)
and OUT/compare.html, self-contained (figures inlined, no server, no external files)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from monosemantic.bench.compare import cell
from monosemantic.evals.plots import have_matplotlib

PARETO = {"pareto_l0_variance_explained.png": "variance_explained",
          "pareto_l0_loss_recovered.png": "loss_recovered"}
"""Plot file -> the figure drawn against L0."""

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:95em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:.2em .5em;font-size:.9em;text-align:right}th{background:#f3f3f3;cursor:pointer}
td:first-child{text-align:left}img{max-width:48%;margin-right:1%}.dim{color:#777}"""

# Numbers sort as numbers, text as text; a missing figure ("-") sorts last either way.
SCRIPT = """function sortBy(t,c){const b=t.tBodies[0],r=[...b.rows],
d=t.dataset.col==c&&t.dataset.dir!='desc'?'desc':'asc';t.dataset.col=c;t.dataset.dir=d;
const v=x=>{const s=x.cells[c].textContent.trim(),n=Number(s);
return s=='-'||s==''?null:isNaN(n)?s:n};
r.sort((x,y)=>{const a=v(x),e=v(y);if(a===null||e===null)return (a===null)-(e===null);
if(typeof a!=typeof e)return typeof a=='number'?-1:1;
return (a>e?1:a<e?-1:0)*(d=='asc'?1:-1)});
r.forEach(x=>b.appendChild(x))}"""


def pareto_points(columns: list[str], rows: list[list[Any]], figure: str
                  ) -> list[tuple[str, float, float]]:
    """(run, L0, figure) of the runs that have both numbers."""
    li, fi = columns.index("l0"), columns.index(figure)
    return [(r[0], float(r[li]), float(r[fi])) for r in rows
            if r[li] is not None and r[fi] is not None]


def frontier(points: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The points no other point beats (lower or equal L0 and a higher figure), by L0."""
    best, out = -float("inf"), []
    for p in sorted(points, key=lambda p: (p[1], -p[2])):
        if p[2] > best:
            out.append(p)
            best = p[2]
    return out


def plot_pareto(columns: list[str], rows: list[list[Any]], out: Path) -> list[Path]:
    """The Pareto PNGs (L0 against each figure); none without matplotlib or numbers."""
    if not have_matplotlib() or "l0" not in columns:
        return []
    import matplotlib

    matplotlib.use("Agg")  # file output only: never needs a display
    import matplotlib.pyplot as plt

    written = []
    for name, figure in PARETO.items():
        points = pareto_points(columns, rows, figure) if figure in columns else []
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
        try:
            ax.scatter([p[1] for p in points], [p[2] for p in points], color="#4878a8")
            for run, x, y in points:
                ax.annotate(run, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
            front = frontier(points)
            ax.plot([p[1] for p in front], [p[2] for p in front], "--", color="#c44e52",
                    label="Pareto frontier")
            ax.set_xlabel("L0 (active features per token)")
            ax.set_ylabel(figure.replace("_", " "))
            ax.legend(loc="lower right", fontsize=8)
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            written.append(out / name)
        finally:
            plt.close(fig)
    return written


def compare_page(report: dict[str, Any], columns: list[str], rows: list[list[Any]],
                 figures: list[Path]) -> str:
    """The HTML of OUT/compare.html."""
    head = "".join(f"<th onclick='sortBy(this.closest(\"table\"),{i})'>{html.escape(c)}</th>"
                   for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    parts = ["<h1>SAE benchmark</h1>",
             f"<p class=dim>{len(rows)} runs; click a column to sort. Definitions: "
             "docs/bench.md.</p>",
             f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"]
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">')
    if report["consistency"]:
        parts.append(_consistency_table(report["consistency"]))
    parts.append("<h2>Probing tasks</h2>" + _probe_table(report))
    parts.append("<details><summary>bench.json</summary><pre>"
                 + html.escape(json.dumps(report["bench"], indent=1)) + "</pre></details>")
    return ("<!doctype html><html><head><meta charset=utf-8><title>SAE benchmark</title>"
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>"
            f"{''.join(parts)}</body></html>\n")


def _consistency_table(pairs: list[dict[str, Any]]) -> str:
    head = ("<h2>Decoder consistency (seed pairs and --pair)</h2><table><tr><th>run A</th>"
            "<th>run B</th><th>mean matched cosine</th><th>share &gt; 0.9</th><th>method</th>"
            "</tr>")
    rows = "".join(f"<tr><td>{html.escape(p['a'])}</td><td>{html.escape(p['b'])}</td>"
                   f"<td>{p['mean_cosine']:.3f}</td><td>{p['share_above_0.9']:.3f}</td>"
                   f"<td>{html.escape(p['method'])}</td></tr>" for p in pairs)
    return head + rows + "</table>"


def _probe_table(report: dict[str, Any]) -> str:
    """Per run and task: the k-feature and raw probes' test accuracy."""
    lines = []
    for name, result in report["results"].items():
        probing = result["metrics"].get("sparse_probing")
        if not probing:
            continue
        for task, t in probing["tasks"].items():
            ks = " ".join(f"k={k}: {v['accuracy']:.3f}" for k, v in t["sae"].items())
            lines.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(task)}</td>"
                         f"<td>{ks}</td><td>{t['raw_accuracy']:.3f}</td>"
                         f"<td>{t['n_per_class']}</td></tr>")
    if not lines:
        return "<p class=dim>not computed</p>"
    return ("<table><tr><th>run</th><th>task</th><th>SAE probes</th><th>raw probe</th>"
            "<th>tokens per class</th></tr>" + "".join(lines) + "</table>")
