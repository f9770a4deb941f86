"""`monosemantic graph RUN [RUN ...] --prompt "..."`: compute, prune, score, check, write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from monosemantic.console import say
from monosemantic.devices import resolve_device
from monosemantic.errors import UserError
from monosemantic.graph.attribution import adjacency, row_computer
from monosemantic.graph.config import GraphConfig
from monosemantic.graph.frozen import CleanRun, record
from monosemantic.graph.interventions import check_interventions
from monosemantic.graph.loading import find_runs, load_replacement
from monosemantic.graph.nodes import NodeSet, logit_targets, node_set, node_values, target_token
from monosemantic.graph.output import graph_dict, prompt_slug, write_graph
from monosemantic.graph.page import write_graph_page
from monosemantic.graph.prune import prune
from monosemantic.graph.replacement import Replacement
from monosemantic.graph.scores import graph_scores
from monosemantic.graph.select import capped_adjacency, influence_ordered_rows
from monosemantic.models import LoadedModel
from monosemantic.steer.compare import prompt_ids


@dataclass
class GraphResult:
    path: Path
    graph: dict[str, Any]


def context_length(lm: LoadedModel) -> int | None:
    """The model's context length from its config, None when it names none."""
    config = lm.model.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def checked_prompt(lm: LoadedModel, prompt: str) -> torch.Tensor:
    """[1, S] ids of the prompt; a UserError when it is empty or too long."""
    ids_1S = prompt_ids(lm, prompt)
    limit = context_length(lm)
    if limit is not None and ids_1S.shape[1] > limit:
        raise UserError(f"the prompt is {ids_1S.shape[1]} tokens (with BOS); {lm.spec} reads "
                        f"at most {limit}: shorten it")
    return ids_1S


def build_graph(lm: LoadedModel, replacement: Replacement, cfg: GraphConfig) -> dict[str, Any]:
    """graph.json's object for `cfg.prompt` (no file written)."""
    ids_1S = checked_prompt(lm, cfg.prompt)
    target_id = None if cfg.target is None else target_token(lm, cfg.target)
    for name, least in (("max_logits", 1), ("batch_size", 1), ("max_feature_nodes", 0),
                        ("update_interval", 1)):
        if getattr(cfg, name) < least:
            raise UserError(f"--{name.replace('_', '-')} must be >= {least}, "
                            f"got {getattr(cfg, name)}")
    clean = record(lm, ids_1S)
    values = node_values(lm, replacement, clean)
    nodes = node_set(lm, values, logit_targets(clean, target_id, cfg.logit_mass,
                                               cfg.max_logits))
    nodes, adj = graph_edges(lm, clean, replacement, nodes, cfg)
    weights = torch.zeros(nodes.n_nodes)
    weights[nodes.logit_start:] = torch.tensor(nodes.logits.probs)
    kinds = nodes.kinds()
    pruned = prune(adj, weights, kinds, cfg.node_threshold, cfg.edge_threshold)
    check = None
    if cfg.interventions:
        kept_adj = adj * pruned.edge_mask
        features_M = pruned.node_mask[:nodes.n_features].nonzero().squeeze(1)
        check = check_interventions(lm, clean, replacement, nodes, adj, kept_adj, features_M,
                                    cfg.batch_size)
    tok = lm.tokenizer
    return graph_dict(
        prompt=cfg.prompt, model=lm.spec, tokens=[tok.decode([t]) for t in ids_1S[0].tolist()],
        logit_tokens=[tok.decode([t]) for t in nodes.logits.token_ids], nodes=nodes, adj=adj,
        pruned=pruned, weights=weights, replacement=replacement,
        scores=graph_scores(adj, weights, kinds),
        thresholds=(cfg.node_threshold, cfg.edge_threshold), check=check)


def graph_edges(lm: LoadedModel, clean: CleanRun, replacement: Replacement, nodes: NodeSet,
                cfg: GraphConfig) -> tuple[NodeSet, torch.Tensor]:
    """(the graph's nodes, its adjacency): every feature a target when they are at most
    --max-feature-nodes (0: no cap), else the most influential ones (`select.py`)."""
    cap = cfg.max_feature_nodes
    if cap == 0 or nodes.n_features <= cap:
        return nodes, adjacency(lm, clean, replacement, nodes, cfg.batch_size)
    weights_N = torch.zeros(nodes.n_nodes)
    weights_N[nodes.logit_start:] = torch.tensor(nodes.logits.probs)
    rows_RN, node_R = influence_ordered_rows(
        row_computer(lm, clean, replacement, nodes), nodes.n_features,
        list(range(nodes.logit_start, nodes.n_nodes)), weights_N, cap, cfg.batch_size,
        cfg.update_interval)
    return capped_adjacency(nodes, rows_RN, node_R)


def default_out(cfg: GraphConfig) -> Path:
    """FIRST_RUN/graphs/<prompt slug>/."""
    return Path(cfg.run[0]) / "graphs" / prompt_slug(cfg.prompt)


def summary(graph: dict[str, Any]) -> str:
    """The lines printed after the graph is written."""
    pruning, scores = graph["pruning"], graph["scores"]
    lines = [f"target {graph['target']['token']!r} (p={graph['target']['prob']:.3f}); "
             f"nodes {pruning['nodes_after']} of {pruning['nodes_before']}, edges "
             f"{pruning['edges_after']} of {pruning['edges_before']}",
             f"replacement score {scores['replacement']:.3f}, completeness score "
             f"{scores['completeness']:.3f} (whole graph)"]
    check = graph.get("interventions")
    if check is not None:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        lines.append(f"ablations of all {check['n']} feature nodes of the pruned graph: "
                     f"Pearson(predicted, measured) {fmt(check['pearson'])} (pruned graph), "
                     f"{fmt(check['pearson_full_graph'])} (whole graph)")
    return "\n".join(lines)


def run_graph(cfg: GraphConfig) -> GraphResult:
    """CLI entry of `monosemantic graph`."""
    if not cfg.prompt:
        raise UserError("give the prompt to explain with --prompt")
    found = find_runs([Path(p) for p in cfg.run], cfg.model)
    lm, replacement = load_replacement(found, str(resolve_device(cfg.device)))
    graph = build_graph(lm, replacement, cfg)
    out_dir = cfg.out if cfg.out is not None else default_out(cfg)
    path = write_graph(graph, out_dir)
    page = Path(path).parent / "graph.html"
    write_graph_page(graph, page)
    say(summary(graph))
    say(f"graph.json: {path}")
    say(f"graph page (open it in a browser; feature cards from each run's features.sqlite): "
        f"{page}")
    return GraphResult(path, graph)
