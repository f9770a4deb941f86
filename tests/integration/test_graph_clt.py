"""Attribution graphs with a cross-layer transcoder as the replacement model, on tiny random
models (float64): the frozen model with the CLT and its error nodes reproduces the real
logits, every edge kind equals the finite difference of the frozen model (a feature's writes
into later layers' MLP outputs included), the predicted ablations are exact in the frozen
spliced model; `monosemantic graph CLT_RUN` end to end, and the mixes it refuses."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.graph import (
    PROMPT,
    assert_predicted_equal_frozen_ablations,
    build,
    clt_replacement,
    finite_difference,
    save_transcoder_runs,
    tiny_clt,
    tiny_transcoders,
)
from helpers.tiny import FAMILIES, tiny_model
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.graph.frozen import frozen_forward
from monosemantic.graph.interventions import spliced_targets
from monosemantic.graph.loading import find_runs, load_replacement
from monosemantic.graph.nodes import valid_positions
from monosemantic.graph.replacement import TranscoderSet
from monosemantic.models import LoadedModel, load_model
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.clt_io import save_clt

SLUG = "the-golden-gate-bridge-is-in-san"


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, tiny_tok):
    model = tiny_model(request.param, len(tiny_tok)).double()
    return LoadedModel.from_hf(model, tiny_tok, spec=request.param)


@pytest.fixture(scope="module")
def rep(lm):
    # Layers 0 and 2: layer 0's features write layer 0's and layer 2's MLP outputs; layer 1
    # is an error node whole.
    return clt_replacement(tiny_clt(lm))


@pytest.fixture(scope="module")
def built(lm, rep):
    return build(lm, rep)


def test_replacement_shape(rep):
    assert rep.kind == "clt" and rep.layers == (0, 2)
    assert rep.writes(0) == (0, 2) and rep.writes(2) == (2,)
    with pytest.raises(ValueError, match="write no layer 0"):
        rep.decoder_rows(2, 0, torch.tensor([0]))
    desc = rep.describe()
    assert desc["kind"] == "clt" and desc["runs"] == {"0": "clt_run", "2": "clt_run"}


def test_frozen_model_with_errors_reproduces_the_logits(lm, rep, built):
    with torch.no_grad():
        fp = frozen_forward(lm, built.clean, rep, built.nodes.values, batch=2)
        real_SV = lm.model(input_ids=built.clean.ids_1S, use_cache=False).logits[0]
    assert fp.head_BSV is not None
    for row in range(2):
        # the frozen forward computes the last position's logits only (the logit nodes')
        torch.testing.assert_close(fp.head_BSV[row], real_SV[-1:], rtol=0, atol=1e-10)
    token = built.nodes.logits.token_ids[0]
    spliced = spliced_targets(lm, built.clean, rep, built.nodes, token, [])
    assert float(spliced[0]) == pytest.approx(float(real_SV[-1, token] - real_SV[-1].mean()),
                                              abs=1e-10)
    # Error of layer 2 = its MLP output minus the CLT's own prediction (writes of layers 0 and
    # 2 plus the bias) wherever codes are nodes (BOS: codes zeroed, the output all error).
    valid_S = valid_positions(lm, built.clean.ids_1S)
    y_hat_SD = rep.clt.predict({0: built.clean.mlp_in[0], 2: built.clean.mlp_in[2]})[2]
    torch.testing.assert_close(built.nodes.values.errors[2][valid_S],
                               (built.clean.mlp_out[2] - y_hat_SD)[valid_S], rtol=0, atol=1e-12)


def _edges(built, source_kind, target_kind, source_layer=None, target_layer=None,
           last_pos=False):
    """Up to 4 nonzero edges of the kinds (and layers; `last_pos`: sources at the last
    position) asked, spread over the list."""
    nodes, adj = built.nodes, built.adj
    kinds = nodes.kinds()
    picked = []
    for t, s in zip(*(i.tolist() for i in adj.nonzero(as_tuple=True))):
        if kinds[t] != target_kind or kinds[s] != source_kind:
            continue
        if source_layer is not None and int(nodes.layer_N[s]) != source_layer:
            continue
        if target_layer is not None and int(nodes.layer_N[t]) != target_layer:
            continue
        if last_pos and int(nodes.pos_N[s]) != nodes.n_pos - 1:
            continue
        picked.append((s, t))
    assert picked, f"no {source_kind} -> {target_kind} edge in the graph"
    step = max(1, len(picked) // 4)
    return picked[::step][:4]


@pytest.mark.parametrize("kinds", [("feature", "feature", 0, 2), ("token", "feature"),
                                   ("error", "feature"), ("error", "logit"),
                                   ("feature", "logit", 0), ("feature", "logit", 2),
                                   # the last position: layer 0's write into layer 2's
                                   # MLP output reaches the logit there
                                   ("feature", "logit", 0, None, True),
                                   ("token", "logit")])
def test_edges_equal_finite_differences_of_the_frozen_model(lm, rep, built, kinds):
    for source, target in _edges(built, *kinds):
        measured = finite_difference(lm, built, rep, source, target)
        assert float(built.adj[target, source]) == pytest.approx(measured, rel=1e-6, abs=1e-9)


def test_a_write_into_a_later_layer_only_is_an_edge(lm):
    """Layer 0's decoder to its own MLP output zeroed: its features reach nothing before
    layer 2's MLP output, so they feed no layer-2 feature, yet feed the logit through their
    write into layer 2's output (a per-layer view would miss these edges)."""
    clt = tiny_clt(lm)
    with torch.no_grad():
        clt.W_dec_to(0, 0).zero_()
    rep = clt_replacement(clt)
    built = build(lm, rep)
    nodes, adj = built.nodes, built.adj
    from_0 = (nodes.layer_N == 0).nonzero().squeeze(1)
    to_2 = (nodes.layer_N == 2).nonzero().squeeze(1)
    assert (adj[to_2[:, None], from_0[None, :]] == 0).all()
    assert finite_difference(lm, built, rep, int(from_0[0]), int(to_2[-1])) == \
        pytest.approx(0.0, abs=1e-12)
    for source, target in _edges(built, "feature", "logit", source_layer=0):
        measured = finite_difference(lm, built, rep, source, target)
        assert abs(measured) > 1e-9
        assert float(adj[target, source]) == pytest.approx(measured, rel=1e-6, abs=1e-9)


def test_predicted_ablations_equal_frozen_spliced_ablations(lm):
    assert_predicted_equal_frozen_ablations(lm, clt_replacement(tiny_clt(lm, scale=1e-3)))


# ---- the command on a saved CLT run ----

@pytest.fixture(scope="module")
def clt_run(tmp_path_factory, tiny_model_dir):
    lm32 = load_model(str(tiny_model_dir))
    run = tmp_path_factory.mktemp("cltgraph") / "clt"
    save_clt(tiny_clt(lm32, layers=(0, 1, 2), scale=0.05, dtype=torch.float32), run / "sae",
             extra_metadata={"model": str(tiny_model_dir), "hook": "blocks.0.hook_mlp_in"})
    return run


def test_graph_command_on_a_clt_run(clt_run, capsys):
    assert main(["graph", str(clt_run), "--prompt", PROMPT, "--batch-size", "8",
                 "--device", "cpu"]) == 0
    path = clt_run / "graphs" / SLUG / "graph.json"
    assert f"graph.json: {path}" in capsys.readouterr().out
    graph = json.loads(path.read_text())
    rep = graph["replacement"]
    assert rep["kind"] == "clt" and rep["layers"] == [0, 1, 2]
    assert rep["run"] == str(clt_run.resolve())
    assert set(rep["runs"].values()) == {str(clt_run.resolve())}
    nodes = {node["id"]: node for node in graph["nodes"]}
    features = [n for n in graph["nodes"] if n["kind"] == "feature"]
    assert features and all(n["run"] == rep["run"] for n in features)
    for edge in graph["edges"]:
        assert nodes[edge["source"]]["layer"] < nodes[edge["target"]]["layer"]
    assert graph["interventions"]["n"] == len(features)
    assert (path.parent / "graph.html").is_file()


def test_a_clt_mixed_with_transcoders_is_refused(clt_run, tmp_path, tiny_model_dir):
    lm32 = load_model(str(tiny_model_dir))
    tcs = save_transcoder_runs(tmp_path, tiny_model_dir,
                               tiny_transcoders(lm32, layers=(1,), dtype=torch.float32))
    with pytest.raises(UserError, match="cannot be mixed with per-layer transcoders"):
        find_runs([clt_run, tcs[1]])
    with pytest.raises(UserError, match="two cross-layer transcoders"):
        find_runs([clt_run, clt_run])


def test_a_clt_over_layers_the_model_lacks_is_refused(tmp_path, tiny_model_dir):
    lm32 = load_model(str(tiny_model_dir))
    run = tmp_path / "clt_far"
    save_clt(tiny_clt(lm32, layers=(0, 5), dtype=torch.float32), run / "sae",
             extra_metadata={"model": str(tiny_model_dir), "hook": "blocks.0.hook_mlp_in"})
    with pytest.raises(UserError, match=r"CLT over layers \[0, 5\].*layers 0\.\.2"):
        load_replacement(find_runs([run]), "cpu")


def test_own_layer_decoders_give_the_per_layer_transcoders_graph(lm):
    """A CLT whose cross-layer decoders are zero is per-layer transcoders (without skip):
    the same nodes, errors and edges."""
    clt = tiny_clt(lm)
    with torch.no_grad():
        clt.W_dec_to(0, 2).zero_()
    tcs = {}
    for layer in clt.layers:
        cfg = SAEConfig(architecture="topk", d_in=lm.d_model, d_out=lm.d_model, n_features=64,
                        k=4, apply_b_dec_to_input=False)
        tc = create_sae(cfg).double()
        with torch.no_grad():
            tc.W_enc_DF.copy_(clt.encoder(layer).W_enc_DF)
            tc.b_enc.copy_(clt.encoder(layer).b_enc)
            tc.W_dec_FD.copy_(clt.W_dec_to(layer, layer))
            tc.b_dec.copy_(clt.bias(layer))
        tcs[layer] = tc.requires_grad_(False)
    as_clt = build(lm, clt_replacement(clt))
    per_layer = build(lm, TranscoderSet(tcs, {layer: "tc" for layer in clt.layers}))
    assert torch.equal(as_clt.nodes.feature_N, per_layer.nodes.feature_N)
    for layer in range(lm.n_layers):
        torch.testing.assert_close(as_clt.nodes.values.errors[layer],
                                   per_layer.nodes.values.errors[layer], rtol=0, atol=1e-12)
    assert as_clt.adj.abs().max() > 0
    torch.testing.assert_close(as_clt.adj, per_layer.adj, rtol=1e-9, atol=1e-12)
