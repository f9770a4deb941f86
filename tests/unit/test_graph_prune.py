"""Pruning and scores of attribution graphs on random layered graphs (no model)."""

from __future__ import annotations

import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.graph.prune import cut_by_share, influence, normalise_rows, prune
from monosemantic.graph.scores import graph_scores


def layered_graph(seed: int = 0, n_layers: int = 3, per_layer: int = 6, n_tokens: int = 4):
    """A random DAG laid out like an attribution graph: features by layer, one error per
    layer, tokens, one logit; every node feeds only later layers."""
    gen = torch.Generator().manual_seed(seed)
    kinds = ["feature"] * (n_layers * per_layer) + ["error"] * n_layers \
        + ["token"] * n_tokens + ["logit"]
    level = [i // per_layer for i in range(n_layers * per_layer)] + list(range(n_layers)) \
        + [-1] * n_tokens + [n_layers]
    n = len(kinds)
    level_t = torch.tensor(level)
    adj = torch.randn(n, n, generator=gen) * (torch.rand(n, n, generator=gen) < 0.6)
    adj = adj * (level_t[None, :] < level_t[:, None])  # source level below target level
    adj[torch.tensor([k in ("error", "token") for k in kinds])] = 0  # sources have no inputs
    for i in range(n_layers):  # an error writes after its layer's features read
        adj[torch.tensor(level) == i, n_layers * per_layer + i] = 0
    weights = torch.zeros(n)
    weights[-1] = 1.0
    return adj, weights, kinds


def test_influence_is_the_neumann_series():
    adj, weights, _ = layered_graph()
    norm = normalise_rows(adj)
    series = sum(torch.linalg.matrix_power(norm, k) for k in range(1, adj.shape[0] + 1))
    torch.testing.assert_close(influence(norm, weights), weights @ series)


def test_cut_by_share_keeps_the_largest_until_the_share():
    scores = torch.tensor([0.5, 0.1, 0.3, 0.1])
    assert cut_by_share(scores, 0.5).tolist() == [True, False, False, False]
    assert cut_by_share(scores, 0.8).tolist() == [True, False, True, False]
    assert cut_by_share(scores, 1.0).all()


def test_pruning_keeps_the_logit_and_is_monotone_in_both_thresholds():
    adj, weights, kinds = layered_graph(seed=3)
    thresholds = [0.0, 0.3, 0.6, 0.8, 0.9, 1.0]
    for edge_t in (0.5, 0.98):
        previous = None
        for node_t in thresholds:
            cut = prune(adj, weights, kinds, node_t, edge_t)
            assert bool(cut.node_mask[-1])
            if previous is not None:
                assert bool((previous.node_mask <= cut.node_mask).all())
                assert bool((previous.edge_mask <= cut.edge_mask).all())
            previous = cut
    for node_t in (0.5, 0.8):
        previous = None
        for edge_t in thresholds:
            cut = prune(adj, weights, kinds, node_t, edge_t)
            assert bool(cut.node_mask[-1])
            if previous is not None:
                assert bool((previous.node_mask <= cut.node_mask).all())
                assert bool((previous.edge_mask <= cut.edge_mask).all())
            previous = cut
    full = prune(adj, weights, kinds, 1.0, 1.0)
    assert int(full.edge_mask.sum()) > int(prune(adj, weights, kinds, 0.5, 0.5).edge_mask.sum())


def test_pruned_edges_join_kept_nodes():
    adj, weights, kinds = layered_graph(seed=5)
    cut = prune(adj, weights, kinds, 0.6, 0.9)
    targets, sources = cut.edge_mask.nonzero(as_tuple=True)
    assert cut.node_mask[targets].all() and cut.node_mask[sources].all()
    assert (adj[cut.edge_mask] != 0).all()


def test_thresholds_outside_the_unit_interval_are_refused():
    adj, weights, kinds = layered_graph()
    with pytest.raises(UserError, match="node-threshold"):
        prune(adj, weights, kinds, 1.5, 0.9)


def test_scores_in_unit_interval_and_one_without_errors():
    adj, weights, kinds = layered_graph(seed=7)
    scores = graph_scores(adj, weights, kinds)
    assert 0.0 <= scores.replacement <= 1.0 and 0.0 <= scores.completeness <= 1.0
    assert scores.replacement < 1.0
    no_errors = adj.clone()
    no_errors[:, torch.tensor([k == "error" for k in kinds])] = 0
    clean = graph_scores(no_errors, weights, kinds)
    assert clean.replacement == 1.0 and clean.completeness == pytest.approx(1.0)
