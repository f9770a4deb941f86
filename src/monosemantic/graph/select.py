"""A graph with at most N feature targets, chosen by their estimated influence on the logits
(circuit tracing's `max_feature_nodes`).

The logit rows are computed first; then, repeatedly, the influence of every node on the
logits is estimated from the rows computed so far (a feature whose row is not computed yet
counts as a source without inputs), and the `update_interval` × batch features of highest
estimate not yet computed get their rows, until N features have rows. Every active feature
is a source in every computed row.

The graph keeps the N computed features as nodes. A feature left out is no node: its write
at (layer, position) is added to the error node there, so its outgoing edges are summed into
that error node's edges (exact: edges are linear in the write). What is missing is the
left-out features' incoming edges (their rows were never computed); the scores then count
influence through them as influence through errors (it is not traced back to tokens).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from monosemantic.graph.nodes import NodeSet
from monosemantic.progress import progress


def partial_influence(rows_RN: Tensor, node_R: Tensor, weights_N: Tensor) -> Tensor:
    """w·(Â + Â² + ...) [N] over a graph of which only the rows `node_R` are known (the other
    nodes have no inputs); Â = |rows| with each row divided by its sum."""
    norm_RN = rows_RN.abs()
    norm_RN = norm_RN / norm_RN.sum(dim=1, keepdim=True).clamp(min=1e-30)
    term_N = weights_N.to(norm_RN.dtype)
    total_N = torch.zeros_like(term_N)
    for _ in range(rows_RN.shape[1] + 1):
        term_N = term_N[node_R] @ norm_RN
        if not term_N.any():
            return total_N
        total_N += term_N
    raise ValueError("the influence series did not end: the graph has a cycle")


def influence_ordered_rows(rows: Callable[[list[int]], Tensor], n_features: int,
                           logit_nodes: list[int], weights_N: Tensor, max_features: int,
                           batch_size: int = 16,
                           update_interval: int = 4) -> tuple[Tensor, Tensor]:
    """(rows [K + M, N], node_R [K + M]): the K logit rows, then the rows of the M =
    min(max_features, n_features) features picked by estimated influence, in the order
    computed. `rows(batch)` gives a batch's rows [len(batch), N]."""
    n_feat_rows = min(max_features, n_features)
    node_R = torch.tensor(list(logit_nodes) + [0] * n_feat_rows)
    done = 0
    out = None
    with progress(-(-len(logit_nodes) // batch_size) - (-n_feat_rows // batch_size),
                  desc="graph edges", unit="batch") as bar:
        for i in range(0, len(logit_nodes), batch_size):
            batch = list(logit_nodes[i:i + batch_size])
            block = rows(batch)
            if out is None:
                out = torch.zeros(len(node_R), block.shape[1], dtype=block.dtype)
            out[done:done + len(batch)] = block
            done += len(batch)
            bar.update(1)
        assert out is not None, "at least one logit node"
        visited = torch.zeros(n_features, dtype=torch.bool)
        while done < len(node_R):
            estimate_F = partial_influence(out[:done], node_R[:done], weights_N)[:n_features]
            rank = estimate_F.argsort(descending=True, stable=True)
            queue = rank[~visited[rank]][:min(update_interval * batch_size,
                                              len(node_R) - done)]
            for i in range(0, len(queue), batch_size):
                batch = queue[i:i + batch_size]
                out[done:done + len(batch)] = rows(batch.tolist())
                node_R[done:done + len(batch)] = batch
                visited[batch] = True
                done += len(batch)
                bar.update(1)
    return out, node_R


def kept_nodes(nodes: NodeSet, keep_F: Tensor) -> NodeSet:
    """The node set with only the features `keep_F` (indices, ascending)."""
    return NodeSet(values=nodes.values, layer_N=nodes.layer_N[keep_F],
                   pos_N=nodes.pos_N[keep_F], feature_N=nodes.feature_N[keep_F],
                   act_N=nodes.act_N[keep_F], n_layers=nodes.n_layers, n_pos=nodes.n_pos,
                   logits=nodes.logits)


def capped_adjacency(nodes: NodeSet, rows_RN: Tensor,
                     node_R: Tensor) -> tuple[NodeSet, Tensor]:
    """(the kept node set, its square adjacency): the features with a row kept, every other
    feature's column added to the error node at its (layer, position)."""
    is_feature_R = node_R < nodes.n_features
    keep_F = node_R[is_feature_R].sort().values
    kept = kept_nodes(nodes, keep_F)
    shift = nodes.n_features - kept.n_features
    new_N = torch.arange(nodes.n_nodes) - shift  # errors, tokens, logits
    new_N[:nodes.n_features] = (kept.error_start + nodes.layer_N * nodes.n_pos + nodes.pos_N)
    new_N[keep_F] = torch.arange(kept.n_features)
    adj = torch.zeros(kept.n_nodes, kept.n_nodes, dtype=rows_RN.dtype)
    adj[new_N[node_R]] = torch.zeros(len(node_R), kept.n_nodes,
                                     dtype=rows_RN.dtype).index_add_(1, new_N, rows_RN)
    return kept, adj
