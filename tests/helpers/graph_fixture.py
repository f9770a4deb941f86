"""A small attribution graph in graph.json's shape (docs/circuits.md, version 1) and a small feature
database for its runs, for the graph page's tests."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from monosemantic.featuredb.schema import SCHEMA, SCHEMA_VERSION

TOKENS = ["<bos>", "The", " capital", " of", " France", " is"]
N_LAYERS = 3
FEATURE_POSITIONS = (1, 2, 4, 5)


def feature_index(layer: int, pos: int, i: int) -> int:
    return 100 * layer + 10 * pos + i


def fixture_graph(runs: dict[int, str] | None = None, seed: int = 0) -> dict[str, Any]:
    """35 nodes (6 tokens, 24 features, 3 errors, 2 logits) and their causal edges with signed
    weights; feature nodes of layer L name `runs[L]` (None when absent)."""
    runs = runs or {}
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = []

    def node(id_: str, kind: str, layer: int, pos: int, label: str, **extra: Any) -> None:
        nodes.append({"id": id_, "kind": kind, "layer": layer, "pos": pos, "feature": None,
                      "run": None, "activation": None,
                      "influence": round(rng.uniform(0.01, 0.3), 3), "label": label, **extra})

    for pos, tok in enumerate(TOKENS):
        node(f"tok:{pos}", "token", -1, pos, json.dumps(tok))
    for layer in range(N_LAYERS):
        for pos in FEATURE_POSITIONS:
            for i in range((layer + pos) % 3 + 1):
                f = feature_index(layer, pos, i)
                node(f"feat:{layer}:{pos}:{f}", "feature", layer, pos, f"L{layer} #{f}")
                nodes[-1].update(feature=f, run=runs.get(layer),
                                 activation=round(rng.uniform(0.5, 4), 2))
        node(f"err:{layer}:5", "error", layer, 5, f"error L{layer} @5")
    node("logit:7127", "logit", N_LAYERS, 5, '" Paris" (p=0.41)', activation=17.2)
    node("logit:262", "logit", N_LAYERS, 5, '" the" (p=0.08)', activation=12.0)
    nodes[-2]["influence"] = 1.0
    edges = []
    for s in nodes:
        for t in nodes:
            later = s["layer"] < t["layer"] or (s["kind"] == "token" and t["layer"] == 0)
            if later and s["kind"] != "logit" and s["pos"] <= t["pos"] and rng.random() < 0.25:
                edges.append({"source": s["id"], "target": t["id"],
                              "weight": round(rng.uniform(-1, 1), 3)})
    return {
        "version": 1, "prompt": "The capital of France is", "model": "tiny-test",
        "tokens": list(TOKENS),
        "target": {"token": " Paris", "token_id": 7127, "logit": 17.2, "prob": 0.41},
        "replacement": {"kind": "transcoders", "layers": list(range(N_LAYERS)),
                        "runs": {str(k): v for k, v in runs.items()}},
        "scores": {"replacement": 0.62, "completeness": 0.81},
        "pruning": {"node_threshold": 0.8, "edge_threshold": 0.98, "nodes_before": 1234,
                    "nodes_after": len(nodes), "edges_before": 50000,
                    "edges_after": len(edges)},
        "nodes": nodes, "edges": edges,
        "interventions": {"metric": "target logit", "pearson": 0.71, "n": 2,
                          "nodes": [{"id": nodes[6]["id"], "predicted": -0.9,
                                     "measured": -1.1}]},
    }


def large_graph(n_nodes: int = 500, n_edges: int = 5000, seed: int = 1) -> dict[str, Any]:
    """A graph of the size the page must stay usable with: 12 layers x 10 positions."""
    rng = random.Random(seed)
    tokens = [f" w{i}" for i in range(10)]
    nodes = [{"id": f"tok:{p}", "kind": "token", "layer": -1, "pos": p, "feature": None,
              "run": None, "activation": None, "influence": 0.01, "label": tokens[p]}
             for p in range(10)]
    nodes.append({"id": "logit:1", "kind": "logit", "layer": 12, "pos": 9, "feature": None,
                  "run": None, "activation": 9.0, "influence": 1.0, "label": "logit"})
    while len(nodes) < n_nodes:
        layer, pos, f = rng.randrange(12), rng.randrange(10), rng.randrange(10_000)
        nodes.append({"id": f"feat:{layer}:{pos}:{f}:{len(nodes)}", "kind": "feature",
                      "layer": layer, "pos": pos, "feature": f, "run": None,
                      "activation": 1.0, "influence": rng.random() * 0.1, "label": f"#{f}"})
    edges: dict[tuple[str, str], float] = {}
    while len(edges) < n_edges:
        s, t = rng.choice(nodes), rng.choice(nodes)
        if s["layer"] < t["layer"]:
            edges[s["id"], t["id"]] = round(rng.uniform(-1, 1), 4)
    return {"version": 1, "prompt": "large", "tokens": tokens,
            "target": {"token": " x", "token_id": 1, "logit": 9.0, "prob": 0.2},
            "nodes": nodes, "edges": [{"source": s, "target": t, "weight": w}
                                      for (s, t), w in edges.items()]}


VOCAB = {0: "<bos>", 1: " Paris", 2: " France", 3: " capital", 4: " of", 5: " is",
         6: "</script><b>x"}


def write_feature_db(path: Path, n_features: int = 256,
                     explained: dict[int, list[str]] | None = None) -> Path:
    """A features.sqlite of this schema version with `n_features` features, 3 top examples
    each (20-token windows; feature f peaks on token 1 + f % 6 in two of them, on token 2 in
    the third) and the explanations `explained` (feature -> texts, oldest first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    with con:
        con.executescript(SCHEMA)
        meta = {"schema_version": SCHEMA_VERSION, "n_features": n_features, "n_tokens": 1000}
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [(k, json.dumps(v)) for k, v in meta.items()])
        con.executemany("INSERT INTO vocab VALUES (?, ?)", list(VOCAB.items()))
        for f in range(n_features):
            max_act = 1.0 + f % 5
            con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?)",
                        (f, max_act, 10 + f, (10 + f) / 1000, max_act / 2))
            for rank in range(3):
                peak = 15
                ids = [(i + rank) % 6 for i in range(20)]
                ids[peak] = 1 + f % 6 if rank < 2 else 2
                acts = [0.0] * 20
                acts[peak], acts[peak - 1] = max_act - rank * 0.1, 0.3
                con.execute("INSERT INTO examples (feature, kind, interval, rank, row, "
                            "activation, peak, tokens, acts) VALUES (?, 'top', NULL, ?, ?, ?, "
                            "?, ?, ?)",
                            (f, rank, 100 * f + rank, acts[peak], peak,
                             np.asarray(ids, "<i4").tobytes(),
                             np.asarray(acts, "<f4").tobytes()))
            con.execute("INSERT INTO logit_effects VALUES (?, 'up', 0, 1, 0.5)", (f,))
        for f, texts in (explained or {}).items():
            for text in texts:
                con.execute("INSERT INTO explanations (feature, explainer, text, created) "
                            "VALUES (?, 'test', ?, '2026-01-01T00:00:00')", (f, text))
    con.close()
    return path
