"""The attribution graph page: one self-contained HTML file (the graph, its feature cards, the
script and the style inlined; no server, no network) drawn as SVG by assets/graph.js.

Nodes sit by layer (rows: tokens at the bottom, logits at the top) and token position
(columns); the header is written here, everything interactive (edge threshold, highlighting,
cards, supernodes kept in localStorage, their export and import) is the script's. Only the keys
of graph.json version 1 that the page reads are embedded; others are ignored.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text, json_ready
from monosemantic.graph.cards import feature_cards
from monosemantic.runs import RunDir

GRAPH_VERSION = 1
NODE_KEYS = ("id", "kind", "layer", "pos", "feature", "run", "activation", "influence", "label")
REQUIRED = ("tokens", "nodes", "edges")


def write_graph_page(graph: dict[str, Any], path: Path,
                     cards: dict[str, dict[str, Any]] | None = None) -> None:
    """Write the page of `graph` (graph.json's content) to `path`, atomically. `cards`: node
    id -> feature card (`feature_cards`); None reads them from the runs' feature databases,
    {} writes a page without cards."""
    if cards is None:
        cards = feature_cards(graph)
    atomic_write_text(Path(path), graph_page(graph, cards))


def graph_page(graph: dict[str, Any], cards: dict[str, dict[str, Any]]) -> str:
    """The page's HTML."""
    data = page_data(graph, cards)
    title = f"Attribution graph: {graph.get('prompt', '')}"
    return ("<!doctype html><html><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>{_asset('graph.css')}</style></head>"
            f"<body>{_header(graph)}{CONTROLS}"
            "<main><div id=canvas><svg id=graph xmlns='http://www.w3.org/2000/svg'></svg></div>"
            "<aside id=panel><p class=dim>Hover or click a node.</p></aside></main>"
            f"<script type='application/json' id=graph-data>{script_json(data)}</script>"
            f"<script>{_asset('graph.js')}</script></body></html>\n")


def page_data(graph: dict[str, Any], cards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the script reads: the graph's known keys, cards stored once each (`cardOf`: node id
    -> index), whether each feature run has a database, the localStorage key of its groups."""
    if graph.get("version", GRAPH_VERSION) != GRAPH_VERSION:
        raise UserError(f"graph.json has version {graph.get('version')}; this page reads "
                        f"version {GRAPH_VERSION}: compute the graph again")
    for key in REQUIRED:
        if key not in graph:
            raise UserError(f"graph.json has no {key!r}: compute the graph again")
    nodes = [{k: n.get(k) for k in NODE_KEYS} for n in graph["nodes"]]
    ids = {n["id"] for n in nodes}
    edges = [{"source": e["source"], "target": e["target"], "weight": float(e["weight"])}
             for e in graph["edges"] if e["source"] in ids and e["target"] in ids]
    unique: dict[str, int] = {}
    card_list: list[Any] = []
    card_of: dict[str, int] = {}
    for node_id, card in cards.items():
        if node_id not in ids:
            continue
        text = json.dumps(json_ready(card), sort_keys=True)
        if text not in unique:
            unique[text] = len(card_list)
            card_list.append(json_ready(card))
        card_of[node_id] = unique[text]
    runs = sorted({str(n["run"]) for n in nodes if n["kind"] == "feature" and n["run"]})
    target = graph.get("target") or {}
    interventions = graph.get("interventions") or {}
    return {"graph": {"prompt": graph.get("prompt", ""), "tokens": list(graph["tokens"]),
                      "target": target, "nodes": nodes, "edges": edges,
                      "interventions": [{k: r.get(k) for k in ("id", "predicted", "measured")}
                                        for r in interventions.get("nodes") or []]},
            "cards": card_list, "cardOf": card_of,
            "dbExists": {run: RunDir(run).db_path.is_file() for run in runs},
            "droppedEdges": len(graph["edges"]) - len(edges),
            "storageKey": "monosemantic.graph.groups\n" + json.dumps(
                [graph.get("prompt", ""), target.get("token"), target.get("token_id")])}


def script_json(value: Any) -> str:
    """`value` as JSON that cannot end its <script> element: no <, > or & appear literally
    (a prompt may hold "</script>" or "<!--")."""
    text = json.dumps(json_ready(value), ensure_ascii=False, allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _asset(name: str) -> str:
    text = resources.files("monosemantic.graph").joinpath("assets", name).read_text("utf-8")
    # Inlined verbatim, so an asset must not close its own element.
    assert "</" not in text.replace("<\\/", ""), f"{name} contains '</'"
    return text


CONTROLS = """<div id=controls>
<label>edges |weight| &ge; <input id=threshold type=range min=0 max=1000 value=0>
<span id=threshold-value>0</span></label> <span id=edge-count class=dim></span>
<span class=sep></span>
<input id=group-name placeholder="supernode name" size=16>
<button id=group title="group the selected nodes (shift-click to select)">Group</button>
<button id=ungroup title="ungroup the selected supernodes">Ungroup</button>
<button id=export>Export groups</button>
<label class=file>Import groups <input id=import type=file accept=".json,application/json">
</label> <span id=status class=dim></span>
<span class=legend><i class=k-token></i>token <i class=k-feature></i>feature
<i class=k-error></i>error <i class=k-logit></i>logit <i class=k-group></i>supernode
<b class=pos>&#8212;</b> positive <b class=neg>&#8212;</b> negative</span>
</div>"""


def _header(graph: dict[str, Any]) -> str:
    target = graph.get("target") or {}
    parts = [f"<h1>Attribution graph <span class=dim>{_e(graph.get('model', ''))}</span></h1>",
             f"<p>prompt <code id=prompt>{_e(graph.get('prompt', ''))}</code> &rarr; target "
             f"<code id=target>{_e(json.dumps(target.get('token'), ensure_ascii=False))}</code>"
             f" (logit {_num(target.get('logit'))}, p {_num(target.get('prob'))})</p>"]
    facts = []
    rep = graph.get("replacement") or {}
    if rep:
        facts.append(f"replacement: {_e(rep.get('kind', '?'))}, layers "
                     f"{_e(', '.join(str(x) for x in rep.get('layers') or []))}")
    scores = graph.get("scores") or {}
    facts.append(f"<span id=scores>replacement score {_num(scores.get('replacement'))}, "
                 f"completeness {_num(scores.get('completeness'))}</span>")
    p = graph.get("pruning") or {}
    if p:
        facts.append(f"<span id=pruning>pruned: nodes {_int(p.get('nodes_before'))} &rarr; "
                     f"{_int(p.get('nodes_after'))} (threshold {_num(p.get('node_threshold'))})"
                     f", edges {_int(p.get('edges_before'))} &rarr; {_int(p.get('edges_after'))}"
                     f" (threshold {_num(p.get('edge_threshold'))})</span>")
    iv = graph.get("interventions")
    if iv:
        facts.append(f"<span id=interventions>interventions: Pearson r "
                     f"{_num(iv.get('pearson'))} over {_int(iv.get('n'))} nodes "
                     f"({_e(iv.get('metric', ''))}, predicted against measured)</span>")
    else:
        facts.append("<span id=interventions class=dim>interventions: not computed</span>")
    return "<header>" + "".join(parts) + "<p>" + " &middot; ".join(facts) + "</p></header>"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) or value != value else f"{value:.3g}"


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "n/a"
