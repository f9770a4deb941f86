"""graph.json (version 1, docs/circuits.md "graph.json"): the pruned graph as nodes and edges,
written atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from torch import Tensor

from monosemantic.fsutil import atomic_write_text, json_ready
from monosemantic.graph.interventions import InterventionCheck
from monosemantic.graph.nodes import NodeSet
from monosemantic.graph.prune import Pruned
from monosemantic.graph.replacement import Replacement
from monosemantic.graph.scores import GraphScores

GRAPH_FILE = "graph.json"


def prompt_slug(prompt: str, limit: int = 48) -> str:
    """A folder name from the prompt: lowercase words joined by '-' (`prompt` if none)."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    slug = "-".join(words)[:limit].strip("-")
    return slug or "prompt"


def _node_ids(nodes: NodeSet) -> list[str]:
    ids = [f"feat:{int(layer)}:{int(pos)}:{int(feat)}"
           for layer, pos, feat in zip(nodes.layer_N, nodes.pos_N, nodes.feature_N)]
    ids += [f"err:{layer}:{pos}" for layer in range(nodes.n_layers)
            for pos in range(nodes.n_pos)]
    ids += [f"tok:{pos}" for pos in range(nodes.n_pos)]
    ids += [f"logit:{tid}" for tid in nodes.logits.token_ids]
    return ids


def _node_entries(nodes: NodeSet, ids: list[str], tokens: list[str], logit_tokens: list[str],
                  pruned: Pruned, weights: Tensor, sources: dict[int, str]) -> list[dict]:
    kept = pruned.node_mask.nonzero().squeeze(1).tolist()
    kinds = nodes.kinds()
    not_logit = [k != "logit" for k in kinds]
    total = float(pruned.influence[Tensor(not_logit).bool()].sum()) or 1.0
    weight_sum = float(weights.sum()) or 1.0
    out = []
    for i in kept:
        kind = kinds[i]
        entry: dict[str, Any] = {"id": ids[i], "kind": kind, "feature": None, "run": None,
                                 "activation": None}
        if kind == "feature":
            layer, pos = int(nodes.layer_N[i]), int(nodes.pos_N[i])
            feat = int(nodes.feature_N[i])
            entry.update(layer=layer, pos=pos, feature=feat, run=sources[layer],
                         activation=float(nodes.act_N[i]), label=f"L{layer} #{feat}")
        elif kind == "error":
            layer, pos = divmod(i - nodes.error_start, nodes.n_pos)
            entry.update(layer=layer, pos=pos, label=f"error L{layer} @{pos}")
        elif kind == "token":
            pos = i - nodes.token_start
            entry.update(layer=-1, pos=pos, label=json.dumps(tokens[pos], ensure_ascii=False))
        else:
            k = i - nodes.logit_start
            entry.update(layer=nodes.n_layers, pos=nodes.n_pos - 1,
                         activation=nodes.logits.logits[k], prob=nodes.logits.probs[k],
                         label=f"{json.dumps(logit_tokens[k], ensure_ascii=False)} "
                               f"(p={nodes.logits.probs[k]:.2f})")
        entry["influence"] = (float(weights[i]) / weight_sum if kind == "logit"
                              else float(pruned.influence[i]) / total)
        out.append(entry)
    return out


def graph_dict(*, prompt: str, model: str, tokens: list[str], logit_tokens: list[str],
               nodes: NodeSet, adj: Tensor, pruned: Pruned, weights: Tensor,
               replacement: Replacement, scores: GraphScores, thresholds: tuple[float, float],
               check: InterventionCheck | None) -> dict[str, Any]:
    """The graph.json object of the pruned graph."""
    ids = _node_ids(nodes)
    desc = replacement.describe()
    sources = {int(k): v for k, v in desc["runs"].items()}
    edges_kept = pruned.edge_mask.nonzero().tolist()
    data: dict[str, Any] = {
        "version": 1, "prompt": prompt, "model": model, "tokens": tokens,
        "target": {"token": logit_tokens[0], "token_id": nodes.logits.token_ids[0],
                   "logit": nodes.logits.logits[0], "prob": nodes.logits.probs[0]},
        "replacement": desc,
        "scores": {"replacement": scores.replacement, "completeness": scores.completeness},
        "pruning": {"node_threshold": thresholds[0], "edge_threshold": thresholds[1],
                    "nodes_before": nodes.n_nodes, "nodes_after": int(pruned.node_mask.sum()),
                    "edges_before": int((adj != 0).sum()), "edges_after": len(edges_kept)},
        "nodes": _node_entries(nodes, ids, tokens, logit_tokens, pruned, weights, sources),
        "edges": [{"source": ids[s], "target": ids[t], "weight": float(adj[t, s])}
                  for t, s in edges_kept],
        "logit_metric": "logit minus the mean logit at the last position",
    }
    if check is not None:
        data["interventions"] = {
            "metric": "target logit minus mean logit (ablated - spliced clean)",
            "pearson": check.pearson, "pearson_full_graph": check.pearson_full,
            "n": len(check.features_M),
            "nodes": [{"id": ids[i], "predicted": float(p), "predicted_full_graph": float(f),
                       "measured": float(m)}
                      for i, p, f, m in zip(check.features_M.tolist(), check.predicted_M,
                                            check.predicted_full_M, check.measured_M)]}
    return data


def write_graph(data: dict[str, Any], out_dir: Path) -> Path:
    """Write `out_dir/graph.json` atomically (staged beside it, then renamed)."""
    path = Path(out_dir) / GRAPH_FILE
    atomic_write_text(path, json.dumps(json_ready(data), indent=1, ensure_ascii=False) + "\n")
    return path
