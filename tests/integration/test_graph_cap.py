"""The feature-node cap on tiny random models (float64): the rows computed under the cap are
the uncapped graph's rows of those nodes, and the capped adjacency sums every left-out
feature's edges into the error node at its layer and position."""

from __future__ import annotations

import pytest
import torch

from helpers.graph import build, tiny_transcoders
from helpers.tiny import FAMILIES, tiny_model
from monosemantic.graph.attribution import row_computer
from monosemantic.graph.replacement import TranscoderSet
from monosemantic.graph.select import capped_adjacency, influence_ordered_rows
from monosemantic.models import LoadedModel


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, tiny_tok):
    model = tiny_model(request.param, len(tiny_tok)).double()
    return LoadedModel.from_hf(model, tiny_tok, spec=request.param)


def _capped(lm: LoadedModel, rep: TranscoderSet, built, cap: int):
    nodes = built.nodes
    weights = torch.zeros(nodes.n_nodes, dtype=torch.float64)
    weights[nodes.logit_start:] = torch.tensor(nodes.logits.probs, dtype=torch.float64)
    return influence_ordered_rows(row_computer(lm, built.clean, rep, nodes), nodes.n_features,
                                  list(range(nodes.logit_start, nodes.n_nodes)), weights,
                                  cap, batch_size=3, update_interval=2)


def test_capped_rows_equal_the_uncapped_rows(lm):
    rep = tiny_transcoders(lm)
    built = build(lm, rep)
    cap = built.nodes.n_features // 3
    assert cap >= 4
    rows, node_R = _capped(lm, rep, built, cap)
    assert len(node_R) == cap + len(built.nodes.logits.token_ids)
    assert len(set(node_R.tolist())) == len(node_R)
    torch.testing.assert_close(rows, built.adj[node_R], rtol=1e-9, atol=1e-12)


def test_left_out_features_join_their_error_node(lm):
    rep = tiny_transcoders(lm)
    built = build(lm, rep)
    full, nodes = built.adj, built.nodes
    rows, node_R = _capped(lm, rep, built, nodes.n_features // 3)
    kept, adj = capped_adjacency(nodes, rows, node_R)
    keep_F = node_R[node_R < nodes.n_features].sort().values
    assert kept.n_features == len(keep_F)
    assert torch.equal(kept.feature_N, nodes.feature_N[keep_F])
    out_F = torch.ones(nodes.n_features, dtype=torch.bool)
    out_F[keep_F] = False
    shift = nodes.n_features - kept.n_features
    targets = torch.cat([keep_F, torch.arange(nodes.logit_start, nodes.n_nodes)])
    new_targets = torch.cat([torch.arange(kept.n_features),
                             torch.arange(kept.logit_start, kept.n_nodes)])
    # feature -> feature/logit edges of kept features unchanged
    torch.testing.assert_close(adj[new_targets][:, :kept.n_features],
                               full[targets][:, keep_F])
    # token edges unchanged
    torch.testing.assert_close(adj[new_targets][:, kept.token_start:kept.logit_start],
                               full[targets][:, nodes.token_start:nodes.logit_start])
    for layer in range(nodes.n_layers):
        for pos in range(nodes.n_pos):
            here = (out_F & (nodes.layer_N == layer) & (nodes.pos_N == pos)).nonzero()[:, 0]
            expected = full[targets, nodes.error_index(layer, pos)] + \
                full[targets][:, here].sum(1)
            torch.testing.assert_close(adj[new_targets, kept.error_index(layer, pos)],
                                       expected)
    assert kept.error_index(0, 0) == nodes.error_index(0, 0) - shift
    # rows of left-out features are gone; every other row keeps its sum
    torch.testing.assert_close(adj[new_targets].sum(1), full[targets].sum(1))
