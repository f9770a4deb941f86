"""`OUT/scaling.html`: one self-contained page (figures inlined as base64 PNG, no server, no
external files) with each group's laws, intervals, warnings and points."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from monosemantic.laws.findings import PAPER_NOTE, findings_rows
from monosemantic.laws.lr import at_grid_edge

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;font-size:.9em}th{background:#f3f3f3}img{max-width:100%}.warn{color:#a33}
code{background:#f3f3f3;padding:0 .2em}"""


def write_page(path: Path, report: dict[str, Any], figures: dict[str, Path | None]) -> Path:
    """Write the page for `report` (scaling.json's content); `figures` maps a group label to
    its PNG (None: not drawn)."""
    body = [f"<h1>Scaling laws: {html.escape(str(report['sweep']))}</h1>",
            f"<p>metric <code>{html.escape(report['metric'])}</code>, method "
            f"<code>{html.escape(report['method'])}</code>. {html.escape(PAPER_NOTE)}</p>"]
    for group in report["groups"]:
        body += _group_section(group, figures.get(group["group"]))
    body.append(f"<p>Plan a budget: <code>monosemantic plan --compute 1e18 --fit "
                f"{html.escape(str(report['sweep']))}</code></p>")
    for label, message in report.get("failed", {}).items():
        body.append(f"<h2>{html.escape(label)}</h2><p class=warn>not fitted: "
                    f"{html.escape(message)}</p>")
    page = ("<!doctype html><html><head><meta charset=utf-8><title>Scaling laws</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _group_section(group: dict[str, Any], figure: Path | None) -> list[str]:
    out = [f"<h2>{html.escape(group['group'])}</h2>"]
    if figure is not None:
        data = base64.b64encode(Path(figure).read_bytes()).decode("ascii")
        out.append(f'<img alt="scaling laws of {html.escape(group["group"])}" '
                   f'src="data:image/png;base64,{data}">')
    else:
        out.append("<p>(no figure: matplotlib is not installed)</p>")
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in findings_rows(group))
    out.append("<table><tr><th>law</th><th>fitted</th><th>exponent</th>"
               f"<th>{group['bootstrap']['confidence']:.0%} interval</th>"
               f"<th>paper (qualitative)</th></tr>{rows}</table>")
    boot = group["bootstrap"]
    out.append(f"<p>bootstrap: {boot['used']} of {boot['requested']} resamples of the runs "
               f"fitted ({boot['failed']} could not be), seed {boot['seed']}, percentiles "
               f"{boot['percentiles'][0]:g} and {boot['percentiles'][1]:g}. Loss offset: "
               f"{html.escape(group['loss']['irreducible'])}. Compute: "
               f"{html.escape(group['flops_formula'])}.</p>")
    out += [f"<p class=warn>{html.escape(w)}</p>" for w in group["warnings"]]
    if group.get("lr"):
        out += _lr_section(group["lr"])
    out.append(_points_table(group["points"]))
    return out


def _lr_section(lr: dict[str, Any]) -> list[str]:
    """The lr law's note and its cells, each marked when its best lr is an end of the grid."""
    cls = " class=warn" if at_grid_edge(lr) else ""
    out = [f"<p{cls}>optimal lr: {html.escape(lr['note'])}</p>"] if "note" in lr else []
    head = ("<tr><th>features</th><th>tokens</th><th>FLOPs</th><th>lrs tried</th>"
            "<th>best lr</th><th>grid edge</th></tr>")
    rows = "".join(
        f"<tr><td>{c['n_features']:,}</td><td>{c['tokens']:,}</td><td>{c['flops']:.3g}</td>"
        f"<td>{c['lrs_tried']}</td><td>{c['lr']:.3g}</td>"
        f"<td>{'the ' + c['edge'] + ' tried: widen --lr' if c.get('edge') else ''}</td></tr>"
        for c in lr["cells"])
    out.append(f"<details><summary>best lr of {len(lr['cells'])} cells</summary>"
               f"<table>{head}{rows}</table></details>")
    return out


def _points_table(points: list[dict[str, Any]]) -> str:
    head = ("<tr><th>run</th><th>features</th><th>tokens</th><th>lr</th><th>FLOPs</th>"
            "<th>loss</th><th>used</th><th>frontier</th></tr>")
    rows = "".join(
        f"<tr><td>{html.escape(p['run'])}</td><td>{p['n_features']:,}</td>"
        f"<td>{p['tokens']:,}</td><td>{p['lr']:.3g}</td><td>{p['flops']:.3g}</td>"
        f"<td>{p['loss']:.5g}</td><td>{'yes' if p['used'] else ''}</td>"
        f"<td>{'yes' if p['frontier'] else ''}</td></tr>" for p in points)
    return f"<details><summary>{len(points)} runs</summary><table>{head}{rows}</table></details>"
