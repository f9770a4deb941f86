"""`monosemantic graph` end to end on a tiny random model: graph.json where it says, in the
schema's shape, with the intervention check over every feature node; and its refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers.graph import PROMPT, save_transcoder_runs, tiny_transcoders
from helpers.tiny import save_tiny_model_dir
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.graph.command import build_graph, checked_prompt, run_graph
from monosemantic.graph.config import GraphConfig
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, save_sae
from monosemantic.steer.correlation import pearson

SLUG = "the-golden-gate-bridge-is-in-san"


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, lm):
    root = tmp_path_factory.mktemp("tcset")
    rep = tiny_transcoders(lm, layers=(0, 2), scale=0.05, dtype=torch.float32)
    runs = save_transcoder_runs(root, tiny_model_dir, rep)
    (root / "transcoders.json").write_text(json.dumps({
        "version": 1, "model": str(tiny_model_dir),
        "layers": {str(layer): run.name for layer, run in runs.items()}}))
    return root, runs


def _one_token(lm, candidates=(" is", " the", " in", " a")) -> str:
    for text in candidates:
        if len(lm.tokenizer(text, add_special_tokens=False)["input_ids"]) == 1:
            return text
    raise AssertionError("no one-token candidate")


def test_graph_command_writes_graph_json_beside_the_set(runs, lm, capsys):
    root, _ = runs
    assert main(["graph", str(root), "--prompt", PROMPT, "--batch-size", "8",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    path = root / "graphs" / SLUG / "graph.json"
    assert f"graph.json: {path}" in out
    assert "replacement score" in out and "Pearson(predicted, measured)" in out
    # Nothing staged is left; the page sits beside the JSON and shows this graph's nodes.
    assert sorted(p.name for p in path.parent.iterdir()) == ["graph.html", "graph.json"]
    assert "graph page (open it in a browser" in out and str(path.parent / "graph.html") in out
    graph = json.loads(path.read_text())
    page = (path.parent / "graph.html").read_text()
    assert all(node["id"] in page for node in graph["nodes"])
    assert graph["version"] == 1 and graph["prompt"] == PROMPT
    assert graph["replacement"]["layers"] == [0, 2]
    assert set(graph["replacement"]["runs"]) == {"0", "2"}
    assert 0.0 <= graph["scores"]["replacement"] <= 1.0
    assert 0.0 <= graph["scores"]["completeness"] <= 1.0
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert len(nodes) == len(graph["nodes"]) == graph["pruning"]["nodes_after"]
    logits = [n for n in graph["nodes"] if n["kind"] == "logit"]
    assert len(logits) == 1 and logits[0]["layer"] == lm.n_layers
    assert logits[0]["id"] == f"logit:{graph['target']['token_id']}"
    assert all(n["layer"] == -1 for n in graph["nodes"] if n["kind"] == "token")
    assert all(0.0 <= n["influence"] <= 1.0 for n in graph["nodes"])
    for edge in graph["edges"]:
        source, target = nodes[edge["source"]], nodes[edge["target"]]
        assert source["layer"] < target["layer"] and source["pos"] <= target["pos"]
    features = [n for n in graph["nodes"] if n["kind"] == "feature"]
    assert features and all(n["run"] in graph["replacement"]["runs"].values()
                            for n in features)
    check = graph["interventions"]
    assert check["n"] == len(features)
    assert {n["id"] for n in check["nodes"]} == {n["id"] for n in features}
    recomputed = pearson([n["predicted"] for n in check["nodes"]],
                         [n["measured"] for n in check["nodes"]])
    assert check["pearson"] == pytest.approx(recomputed)


def test_graph_of_runs_with_a_target_and_out(runs, lm, tmp_path, capsys):
    _, by_layer = runs
    target = _one_token(lm)
    out = tmp_path / "g"
    result = run_graph(GraphConfig(run=[by_layer[2], by_layer[0]], prompt=PROMPT,
                                   target=target, out=out, interventions=False,
                                   device="cpu"))
    assert result.path == out / "graph.json" and result.path.is_file()
    assert result.graph["target"]["token"] == target
    assert "interventions" not in result.graph
    assert f"graph.json: {result.path}" in capsys.readouterr().out


def test_logit_mass_adds_logit_nodes(runs, lm):
    _, by_layer = runs
    cfg = GraphConfig(run=[by_layer[0]], prompt=PROMPT, logit_mass=0.999, max_logits=3,
                      interventions=False)
    from monosemantic.graph.loading import find_runs, load_replacement

    lm_, rep = load_replacement(find_runs(cfg.run), "cpu")
    graph = build_graph(lm_, rep, cfg)
    assert sum(n["kind"] == "logit" for n in graph["nodes"]) == 3


def test_max_feature_nodes_caps_the_feature_nodes(runs):
    root, _ = runs
    from monosemantic.graph.frozen import record
    from monosemantic.graph.loading import find_runs, load_replacement
    from monosemantic.graph.nodes import logit_targets, node_set, node_values

    lm_, rep = load_replacement(find_runs([root]), "cpu")
    whole = build_graph(lm_, rep, GraphConfig(run=[root], prompt=PROMPT, interventions=False,
                                              max_feature_nodes=0))
    clean = record(lm_, checked_prompt(lm_, PROMPT))
    n_features = node_set(lm_, node_values(lm_, rep, clean),
                          logit_targets(clean, None, 0.0, 1)).n_features
    cap = n_features // 4
    graph = build_graph(lm_, rep, GraphConfig(run=[root], prompt=PROMPT, max_feature_nodes=cap,
                                              batch_size=4))
    assert graph["pruning"]["nodes_before"] == whole["pruning"]["nodes_before"] - n_features + cap
    kept = {n["id"] for n in graph["nodes"] if n["kind"] == "feature"}
    assert 0 < len(kept) <= cap and kept <= {n["id"] for n in whole["nodes"]}
    assert 0 <= graph["scores"]["replacement"] <= 1 and graph["interventions"]["n"] > 0
    with pytest.raises(UserError, match="--max-feature-nodes must be >= 0"):
        build_graph(lm_, rep, GraphConfig(run=[root], prompt=PROMPT, max_feature_nodes=-1))


def test_a_residual_sae_is_refused(tmp_path, tiny_model_dir):
    sae = create_sae(SAEConfig(architecture="topk", d_in=32, n_features=64, k=4))
    save_sae(sae, tmp_path / "sae_run" / "sae", extra_metadata={
        "model": str(tiny_model_dir), "hook": "blocks.1.hook_resid_post"})
    with pytest.raises(UserError, match="not a transcoder.*hook_mlp_in"):
        run_graph(GraphConfig(run=[tmp_path / "sae_run"], prompt=PROMPT))


def test_transcoders_of_different_models_are_refused(runs, tmp_path, lm):
    _, by_layer = runs
    other = save_tiny_model_dir(tmp_path / "other", seed=1)
    rep = tiny_transcoders(lm, layers=(1,), dtype=torch.float32)
    extra = save_transcoder_runs(tmp_path / "more", other, rep)
    with pytest.raises(UserError, match="different models"):
        run_graph(GraphConfig(run=[by_layer[0], extra[1]], prompt=PROMPT))


def test_two_transcoders_for_one_layer_are_refused(runs):
    root, by_layer = runs
    with pytest.raises(UserError, match="two transcoders for layer 0"):
        run_graph(GraphConfig(run=[root, by_layer[0]], prompt=PROMPT))


def test_a_transcoder_across_layers_is_refused(tmp_path, tiny_model_dir, lm):
    tc = tiny_transcoders(lm, layers=(0,), dtype=torch.float32).transcoders[0]
    save_sae(tc, tmp_path / "x" / "sae", extra_metadata={
        "model": str(tiny_model_dir), "hook": "blocks.0.hook_mlp_in",
        "hook_out": "blocks.1.hook_mlp_out"})
    with pytest.raises(UserError, match="same layer"):
        run_graph(GraphConfig(run=[tmp_path / "x"], prompt=PROMPT))


def test_an_unmapped_family_is_refused(runs, lm):
    _, by_layer = runs
    from monosemantic.graph.loading import find_runs, load_replacement

    _, rep = load_replacement(find_runs([by_layer[0]]), "cpu")
    odd = dataclasses.replace(lm, family="mystery")
    with pytest.raises(UserError, match="'mystery' family is not mapped"):
        build_graph(odd, rep, GraphConfig(prompt=PROMPT))


def test_a_prompt_longer_than_the_context_is_refused(runs):
    root, _ = runs
    with pytest.raises(UserError, match="shorten it"):
        run_graph(GraphConfig(run=[root], prompt="a b " * 400))


def test_a_target_of_several_tokens_is_refused_with_its_tokens(runs):
    root, _ = runs
    with pytest.raises(UserError, match=r"is \d+ tokens \[.*one token"):
        run_graph(GraphConfig(run=[root], prompt=PROMPT, target=" Golden Gate Bridge"))


def test_a_zero_batch_is_refused(runs):
    root, _ = runs
    with pytest.raises(UserError, match="--batch-size must be >= 1"):
        run_graph(GraphConfig(run=[root], prompt=PROMPT, batch_size=0))


def test_no_prompt_is_refused(runs):
    root, _ = runs
    with pytest.raises(UserError, match="--prompt"):
        run_graph(GraphConfig(run=[root]))
