"""OUT/findings/splitting.html: a self-contained family view (figure inlined, no server, no
external files). Each family is a nested <details> list: a node shows its size, feature id,
class, similarity to its parent (decoder cosine and activation correlation), firing frequency
on the held-out tokens and, when its run has a feature database, its top tokens."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from monosemantic.findings.families import descendants
from monosemantic.findings.matching import SMALL_CLASSES
from monosemantic.findings.pairs import MEASURES
from monosemantic.fsutil import atomic_write_text

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:90em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .5em;
font-size:.9em;text-align:right}th{background:#f3f3f3}img{max-width:100%}
details{margin-left:1.4em}summary{cursor:pointer;white-space:nowrap}
.split{color:#b22}.persist{color:#25a}.drift{color:#a70}.vanish{color:#777}
.tok{background:#eef;padding:0 .25em;margin-right:.2em;font-family:monospace}
.dim{color:#888}code{background:#f3f3f3;padding:0 .2em}"""

SCRIPT = """function all(open){document.querySelectorAll('details').forEach(d=>d.open=open)}"""


def write_family_page(path: Path, report: dict[str, Any], figure: Path | None,
                      max_trees: int) -> Path:
    """Write the page for `report` (splitting.json's content)."""
    m = report["config"]["match"]
    body = [f"<h1>Feature splitting: {html.escape(report['sweep'])}</h1>",
            f"<p>{html.escape(report['note'])}</p>",
            f"<p>Thresholds: child {m['child_threshold']:g}, persist "
            f"{m['persist_threshold']:g}. Classes of a smaller-SAE feature: "
            + "; ".join(f"<b class={c}>{c}</b>: {html.escape(report['definitions'][f'small.{c}'])}"
                        for c in SMALL_CLASSES)
            + ". A larger-SAE feature <b>appears</b> when it has no parent above the child "
              "threshold.</p>"]
    if figure is not None:
        data = base64.b64encode(Path(figure).read_bytes()).decode("ascii")
        body.append(f'<img alt="shares against size" src="data:image/png;base64,{data}">')
    for series in report["series"]:
        body += _series(series, max_trees)
    page = ("<!doctype html><html><head><meta charset=utf-8><title>Feature splitting</title>"
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>"
            f"{''.join(body)}</body></html>\n")
    atomic_write_text(Path(path), page)
    return Path(path)


def _series(series: dict[str, Any], max_trees: int) -> list[str]:
    h = series["holdout"]
    out = [f"<h2>{html.escape(series['series'])}</h2>",
           f"<p>Sizes {', '.join(f'{n:,}' for n in series['sizes'])} (runs "
           f"{html.escape(', '.join(series['runs']))}); {h['n_tokens']:,} held-out tokens, "
           f"store rows {h['rows'][0]:,} to {h['rows'][1]:,}.</p>", _shares_table(series)]
    out += [f"<p class=split>warning: {html.escape(w)}</p>" for w in series["warnings"]]
    fams = series["families"]
    trees = sorted(fams["trees"], key=lambda t: (-descendants(t), t["feature"]))
    shown = trees[:max_trees]
    out.append(f"<h3>Families (parent links by {html.escape(fams['by'])})</h3>"
               f"<p>{len(shown)} of {len(trees)} families of the smallest size, largest first. "
               "<button onclick='all(true)'>expand all</button> "
               "<button onclick='all(false)'>collapse all</button></p>")
    out += [_node(t) for t in shown]
    return out


def _shares_table(series: dict[str, Any]) -> str:
    head = ("<tr><th>pair</th><th>measure</th><th>correlated pairs</th>"
            + "".join(f"<th>{c}</th>" for c in SMALL_CLASSES)
            + "<th>appear</th><th>silent (small / large)</th><th>same index</th></tr>")
    rows = []
    for p in series["pairs"]:
        for measure in MEASURES:
            by = p["by"][measure]
            small, large = by["small"], by["large"]
            cells = "".join(f"<td>{_share(small, c)}</td>" for c in SMALL_CLASSES)
            rows.append(f"<tr><td>{p['small']['n_features']:,} → {p['large']['n_features']:,}"
                        f"</td><td>{measure}</td><td>{html.escape(p['correlation_pairs'])}</td>"
                        f"{cells}<td>{_share(large, 'appear')}</td>"
                        f"<td>{small['silent']} / {large['silent']}</td>"
                        f"<td>{_pct(p['same_index'][measure])}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _share(side: dict[str, Any], cls: str) -> str:
    share = side["shares"][cls]
    return "n/a" if share is None else f"{share:.1%} ({side['counts'][cls]})"


def _node(node: dict[str, Any]) -> str:
    cls = node.get("class")
    parts = [f"F={node['n_features']:,} <b>#{node['feature']}</b>"]
    if "decoder_cosine" in node:
        parts.append(f"to parent: cos {_num(node['decoder_cosine'])}, r "
                     f"{_num(node['correlation'])}")
    parts.append(f"<span class=dim>freq {node['frequency']:.2e}</span>")
    tokens = node.get("top_tokens")
    if tokens:
        parts.append("".join(f"<span class=tok>{html.escape(repr(t)[1:-1])}</span>"
                             for t in tokens))
    if cls:
        parts.append(f"then <span class={cls}>{cls}</span>")
    label = " · ".join(parts)
    children = node.get("children") or []
    if not children:
        return f"<div style='margin-left:1.4em'>{label}</div>"
    inner = "".join(_node(c) for c in children)
    return f"<details><summary>{label} <span class=dim>({descendants(node)} below)</span>" \
           f"</summary>{inner}</details>"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
