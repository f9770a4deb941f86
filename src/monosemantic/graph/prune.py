"""Influence and pruning of an attribution graph (Ameisen et al. 2025, "Circuit Tracing").

Â = |A| with each row (a target's incoming edges) divided by its sum. A path's product of Â
entries is the share of the target's input that flows along it; the influence of every node
on the logit nodes is w·(Â + Â² + Â³ + ...), w the logit nodes' probabilities. The graph is
acyclic (an edge raises the layer), so the series ends after at most n_layers + 2 terms.

Nodes: those with the largest influence that together hold `node_threshold` of the total are
kept, and every token and logit node. Edges: score(s -> t) = Â[t, s]·(influence of t + w_t),
the share of the logit nodes' input that passes along the edge; those with the largest scores
that hold `edge_threshold` of the total score are kept, if both their ends are kept. Last, a
feature or error with no kept outgoing edge, or a feature with no kept incoming edge, is
dropped (and its edges), until none is left. Edge scores come from the whole graph (not
recomputed after the node cut): both cuts are then thresholds on fixed scores and the final
graph only grows with either threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from monosemantic.errors import UserError


def normalise_rows(adj: Tensor) -> Tensor:
    """|A| with rows summing to 1 (rows without inputs stay 0)."""
    abs_adj = adj.abs()
    return abs_adj / abs_adj.sum(dim=1, keepdim=True).clamp(min=1e-30)


def influence(norm_adj: Tensor, weights: Tensor, max_terms: int | None = None) -> Tensor:
    """w·(Â + Â² + ...) [n]: every node's influence on the weighted nodes."""
    max_terms = max_terms or norm_adj.shape[0] + 1
    term = weights @ norm_adj
    total = term.clone()
    for _ in range(max_terms):
        if not term.any():
            return total
        term = term @ norm_adj
        total += term
    raise ValueError("the influence series did not end: the graph has a cycle")


def cut_by_share(scores: Tensor, share: float) -> Tensor:
    """Mask of the largest `scores` that together hold `share` of their sum (ties kept)."""
    if scores.numel() == 0 or float(scores.sum()) <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    ordered = scores.flatten().sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, torch.tensor(share))), len(ordered) - 1)
    return (scores >= ordered[index]) & (scores > 0)


@dataclass
class Pruned:
    """Kept nodes and edges, and the whole graph's node influence."""

    node_mask: Tensor
    edge_mask: Tensor
    """[n, n] like the adjacency (target row, source column)."""
    influence: Tensor


def prune(adj: Tensor, weights: Tensor, kinds: list[str], node_threshold: float = 0.8,
          edge_threshold: float = 0.98) -> Pruned:
    """Keep the nodes and edges that carry most of the influence on the logit nodes
    (`weights`: each node's weight, nonzero on logit nodes only)."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
    norm_adj = normalise_rows(adj)
    node_influence = influence(norm_adj, weights)
    kind = list(kinds)
    always = torch.tensor([k in ("token", "logit") for k in kind])
    cuttable = ~always
    node_mask = always.clone()
    node_mask[cuttable] = cut_by_share(node_influence[cuttable], node_threshold)
    edge_scores = norm_adj * (node_influence + weights)[:, None]
    edge_mask = cut_by_share(edge_scores, edge_threshold) & (adj != 0)
    is_feature = torch.tensor([k == "feature" for k in kind])
    while True:
        edge_mask &= node_mask[:, None] & node_mask[None, :]
        keep = node_mask.clone()
        keep[cuttable] &= edge_mask[:, cuttable].any(0)
        keep[is_feature] &= edge_mask[is_feature].any(1)
        if torch.equal(keep, node_mask):
            return Pruned(node_mask, edge_mask, node_influence)
        node_mask = keep
