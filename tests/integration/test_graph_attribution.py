"""Attribution graphs on tiny random models (float64): the frozen replacement model with its
error nodes reproduces the real logits, every edge kind equals the finite difference of the
frozen model, the graph's predicted ablation effects equal ablations in the frozen spliced
model, and the scores are 1 when every error is zero."""

from __future__ import annotations

import pytest
import torch

from helpers.graph import (
    PROMPT,
    as_transcoder_mlp,
    assert_predicted_equal_frozen_ablations,
    build,
    finite_difference,
    tiny_transcoders,
)
from helpers.tiny import FAMILIES, tiny_model
from monosemantic.graph.frozen import frozen_forward
from monosemantic.graph.interventions import spliced_targets
from monosemantic.graph.nodes import valid_positions
from monosemantic.graph.scores import graph_scores
from monosemantic.models import LoadedModel


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, tiny_tok):
    model = tiny_model(request.param, len(tiny_tok)).double()
    return LoadedModel.from_hf(model, tiny_tok, spec=request.param)


@pytest.fixture(scope="module")
def rep(lm):
    return tiny_transcoders(lm)  # layers 0 and 2 replaced; layer 1 an error node whole


@pytest.fixture(scope="module")
def built(lm, rep):
    return build(lm, rep)


def _logits(lm, ids_1S):
    with torch.no_grad():
        return lm.model(input_ids=ids_1S, use_cache=False).logits[0]


def test_frozen_model_with_errors_reproduces_the_logits(lm, rep, built):
    with torch.no_grad():
        fp = frozen_forward(lm, built.clean, rep, built.nodes.values, batch=2)
    real_SV = _logits(lm, built.clean.ids_1S)
    assert fp.head_BSV is not None
    for row in range(2):
        # the frozen forward computes the last position's logits only (the logit nodes')
        torch.testing.assert_close(fp.head_BSV[row], real_SV[-1:], rtol=0, atol=1e-10)
    # The spliced model (attention and norms live) with the errors kept: the same logits.
    token = built.nodes.logits.token_ids[0]
    spliced = spliced_targets(lm, built.clean, rep, built.nodes, token, [])
    assert float(spliced[0]) == pytest.approx(float(real_SV[-1, token] - real_SV[-1].mean()),
                                              abs=1e-10)


def _kind(nodes, index):
    if index < nodes.error_start:
        return "feature"
    if index < nodes.token_start:
        return "error"
    return "token" if index < nodes.logit_start else "logit"


def _edges(built, source_kind, target_kind, source_layer=None):
    """Up to 4 nonzero edges of the kinds asked, spread over the list."""
    nodes, adj = built.nodes, built.adj
    targets_T, sources_S = adj.nonzero(as_tuple=True)
    picked = []
    for t, s in zip(targets_T.tolist(), sources_S.tolist()):
        if _kind(nodes, t) != target_kind or _kind(nodes, s) != source_kind:
            continue
        if source_layer is not None and int(nodes.layer_N[s]) != source_layer:
            continue
        picked.append((s, t))
    assert picked, f"no {source_kind} -> {target_kind} edge in the graph"
    step = max(1, len(picked) // 4)
    return picked[::step][:4]


@pytest.mark.parametrize("kinds", [("feature", "feature"), ("token", "feature"),
                                   ("error", "feature"), ("error", "logit"),
                                   ("feature", "logit"), ("token", "logit")])
def test_edges_equal_finite_differences_of_the_frozen_model(lm, rep, built, kinds):
    for source, target in _edges(built, *kinds):
        measured = finite_difference(lm, built, rep, source, target)
        assert float(built.adj[target, source]) == pytest.approx(measured, rel=1e-6, abs=1e-9)


def test_edges_absent_where_the_frozen_model_has_no_path(lm, rep, built):
    nodes, adj = built.nodes, built.adj
    n_f = nodes.n_features
    layer_N, pos_N = nodes.layer_N, nodes.pos_N
    same_or_later = layer_N[None, :] >= layer_N[:, None]
    future = pos_N[None, :] > pos_N[:, None]
    assert (adj[:n_f, :n_f][same_or_later | future] == 0).all()
    # Rows of sources (errors, tokens) have no inputs; an error at layer L never feeds
    # a feature of layer L.
    assert (adj[nodes.error_start:nodes.logit_start] == 0).all()
    layer2 = (layer_N == 2).nonzero().squeeze(1)
    err2 = slice(nodes.error_index(2, 0), nodes.error_index(2, 0) + nodes.n_pos)
    assert (adj[layer2, err2] == 0).all()
    # A zero edge is a zero finite difference too.
    src = int(((layer_N == 0) & (pos_N == pos_N.max())).nonzero()[0])
    tgt = int(((layer_N == 2) & (pos_N < pos_N.max())).nonzero()[0])
    assert finite_difference(lm, built, rep, src, tgt) == pytest.approx(0.0, abs=1e-12)


def test_predicted_ablations_equal_frozen_spliced_ablations(lm):
    """Writes scaled down so no top-k reselection happens."""
    assert_predicted_equal_frozen_ablations(lm, tiny_transcoders(lm, scale=1e-3))


def test_scores_are_one_when_every_error_is_zero(tiny_tok):
    """Every MLP of the model is replaced by a module computing the transcoder's output, so
    the transcoders reconstruct it exactly and every error node is zero."""
    lm = LoadedModel.from_hf(tiny_model("llama", len(tiny_tok)).double(), tiny_tok,
                             spec="llama")
    rep = tiny_transcoders(lm, layers=(0, 1, 2))
    ids = lm.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    valid_S1 = valid_positions(lm, torch.tensor([[1, *ids]]))[:, None]
    for layer in range(lm.n_layers):
        lm.model.model.layers[layer].mlp = as_transcoder_mlp(rep, layer, valid_S1)
    built = build(lm, rep)
    nodes = built.nodes
    assert all(bool((e == 0).all()) for e in nodes.values.errors.values())
    weights = torch.zeros(nodes.n_nodes, dtype=built.adj.dtype)
    weights[nodes.logit_start:] = torch.tensor(nodes.logits.probs, dtype=built.adj.dtype)
    scores = graph_scores(built.adj, weights, nodes.kinds())
    assert scores.replacement == 1.0
    assert scores.completeness == pytest.approx(1.0, abs=1e-12)


def test_scores_are_in_the_unit_interval(built):
    nodes = built.nodes
    weights = torch.zeros(nodes.n_nodes, dtype=built.adj.dtype)
    weights[nodes.logit_start:] = torch.tensor(nodes.logits.probs, dtype=built.adj.dtype)
    scores = graph_scores(built.adj, weights, nodes.kinds())
    assert 0.0 < scores.replacement < 1.0  # layer 1 is all error: some influence is lost
    assert 0.0 < scores.completeness < 1.0
