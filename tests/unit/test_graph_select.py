"""Influence-ordered feature selection (graph/select.py) on a constructed graph."""

from __future__ import annotations

import torch

from monosemantic.graph.prune import influence, normalise_rows
from monosemantic.graph.select import influence_ordered_rows, partial_influence

# Nodes: features 0..4, an error (5), a token (6), the logit (7). Feature 3 reaches the
# logit only through feature 0, so its influence shows once feature 0's row is known.
N_FEATURES, LOGIT = 5, 7


def _graph() -> torch.Tensor:
    adj = torch.zeros(8, 8, dtype=torch.float64)
    adj[LOGIT, [0, 1, 2, 4, 6]] = torch.tensor([0.5, -0.3, 0.1, 0.05, 0.05],
                                                dtype=torch.float64)
    adj[0, 3], adj[0, 6] = 0.9, 0.1
    for f in (1, 2, 3, 4):
        adj[f, 6] = 1.0
    return adj


def _weights() -> torch.Tensor:
    w = torch.zeros(8, dtype=torch.float64)
    w[LOGIT] = 1.0
    return w


def _select(adj: torch.Tensor, cap: int, batch_size: int = 1, update_interval: int = 1):
    asked: list[list[int]] = []

    def rows(batch: list[int]) -> torch.Tensor:
        asked.append(list(batch))
        return adj[batch]

    return influence_ordered_rows(rows, N_FEATURES, [LOGIT], _weights(), cap, batch_size,
                                  update_interval), asked


def test_the_selected_features_are_the_most_influential():
    adj = _graph()
    full = influence(normalise_rows(adj), _weights())[:N_FEATURES]
    for cap in (1, 2, 3, 4):
        (rows, node_R), _ = _select(adj, cap)
        top = set(full.argsort(descending=True)[:cap].tolist())
        assert set(node_R[1:].tolist()) == top
        assert torch.equal(rows, adj[node_R])
    (_, node_R), _ = _select(adj, 2)
    assert node_R.tolist() == [LOGIT, 0, 3]  # 3 found through 0's row


def test_without_updates_an_indirect_feature_is_missed():
    # one ranking from the logit row only (a queue as long as the cap) misses feature 3
    (_, node_R), _ = _select(_graph(), 2, batch_size=1, update_interval=2)
    assert node_R.tolist() == [LOGIT, 0, 1]


def test_logit_rows_come_first_and_each_feature_once():
    (rows, node_R), asked = _select(_graph(), 10, batch_size=2)
    assert asked[0] == [LOGIT]
    assert sorted(node_R[1:].tolist()) == list(range(N_FEATURES))
    assert rows.shape == (1 + N_FEATURES, 8)


def test_partial_influence_with_every_row_is_the_full_influence():
    adj = _graph()
    nodes = torch.tensor([LOGIT, 0, 1, 2, 3, 4])
    assert torch.allclose(partial_influence(adj[nodes], nodes, _weights()),
                          influence(normalise_rows(adj), _weights()))
