"""graph/page.py: the attribution graph page is one self-contained, safely escaped HTML file."""

import json
import re

import pytest

from helpers.graph_fixture import fixture_graph, write_feature_db
from monosemantic.errors import UserError
from monosemantic.graph.page import graph_page, page_data, script_json, write_graph_page

HOSTILE = "</script><script>alert(1)</script><!-- & \u2028"


def _data(page: str) -> dict:
    match = re.search(r"<script type='application/json' id=graph-data>(.*?)</script>", page,
                      re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_page_is_self_contained(tmp_path):
    path = tmp_path / "graph.html"
    write_graph_page(fixture_graph(), path, {})
    page = path.read_text()
    assert page.startswith("<!doctype html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert "<link" not in page
    # the whole script and style are inline (no <script src=...>)
    assert re.findall(r"<script[^>]*>", page) == ["<script type='application/json' "
                                                  "id=graph-data>", "<script>"]
    assert "function layout()" in page and "line.edge.off{display:none}" in page
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_replaces_an_existing_page(tmp_path):
    path = tmp_path / "graph.html"
    path.write_text("old")
    write_graph_page(fixture_graph(), path, {})
    assert path.read_text().startswith("<!doctype html>")


def test_prompt_and_tokens_cannot_end_the_script(tmp_path):
    graph = fixture_graph()
    graph["prompt"] = HOSTILE
    graph["tokens"][2] = HOSTILE
    graph["nodes"][0]["label"] = HOSTILE
    page = graph_page(graph, {"tok:0": {"note": HOSTILE}})
    # only the two script elements of the page itself close
    assert page.count("</script>") == 2
    assert page.count("<script") == 2
    assert "<!--" not in page
    data = _data(page)
    assert data["graph"]["prompt"] == HOSTILE
    assert data["graph"]["tokens"][2] == HOSTILE
    assert data["graph"]["nodes"][0]["label"] == HOSTILE
    assert data["cards"] == [{"note": HOSTILE}]
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page  # the header, as text


def test_script_json_round_trips_and_has_no_markup():
    value = {"a": "<b>&</b>", "n": float("nan"), "s": "\u2028x"}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "<b>&</b>", "n": None, "s": "\u2028x"}


def test_unknown_keys_are_ignored():
    graph = fixture_graph()
    graph["producer_extra"] = {"secret": "top-level-extra"}
    graph["nodes"][3]["node_extra"] = "node-level-extra"
    graph["edges"][0]["edge_extra"] = "edge-level-extra"
    graph["target"]["other"] = 1
    page = graph_page(graph, {})
    for word in ("top-level-extra", "node-level-extra", "edge-level-extra", "producer_extra"):
        assert word not in page
    data = _data(page)
    assert len(data["graph"]["nodes"]) == len(graph["nodes"])
    assert set(data["graph"]["edges"][0]) == {"source", "target", "weight"}


def test_header_scores_pruning_and_interventions():
    graph = fixture_graph()
    page = graph_page(graph, {})
    assert "replacement score 0.62, completeness 0.81" in page
    assert f"nodes 1,234 &rarr; {len(graph['nodes'])}" in page
    assert "edges 50,000 &rarr;" in page
    assert "Pearson r 0.71 over 2 nodes" in page
    assert _data(page)["graph"]["interventions"] == [
        {"id": graph["nodes"][6]["id"], "predicted": -0.9, "measured": -1.1}]


def test_missing_interventions_and_optional_sections_are_fine():
    graph = fixture_graph()
    for key in ("interventions", "pruning", "replacement", "scores", "model"):
        del graph[key]
    page = graph_page(graph, {})
    assert "interventions: not computed" in page
    assert "Pearson" not in page
    assert "completeness n/a" in page
    assert _data(page)["graph"]["interventions"] == []


def test_edges_with_unknown_ends_are_dropped_and_counted():
    graph = fixture_graph()
    graph["edges"].append({"source": "feat:9:9:9", "target": "logit:7127", "weight": 1.0})
    data = page_data(graph, {})
    assert data["droppedEdges"] == 1
    assert len(data["graph"]["edges"]) == len(graph["edges"]) - 1


def test_version_and_required_keys_are_checked():
    graph = fixture_graph()
    graph["version"] = 2
    with pytest.raises(UserError, match="version 2"):
        page_data(graph, {})
    graph = fixture_graph()
    del graph["edges"]
    with pytest.raises(UserError, match="'edges'"):
        page_data(graph, {})


def test_cards_are_stored_once_and_only_for_known_nodes():
    card = {"feature": 1, "density": 0.1}
    data = page_data(fixture_graph(), {"feat:0:1:10": card, "feat:0:1:11": dict(card),
                                       "feat:0:2:20": {"feature": 2}, "nope": {"x": 1}})
    assert data["cards"] == [card, {"feature": 2}]
    assert data["cardOf"] == {"feat:0:1:10": 0, "feat:0:1:11": 0, "feat:0:2:20": 1}


def test_db_exists_per_run_and_storage_key(tmp_path):
    write_feature_db(tmp_path / "r0" / "features.sqlite", n_features=8)
    graph = fixture_graph({0: str(tmp_path / "r0"), 1: str(tmp_path / "r1")})
    data = page_data(graph, {})
    assert data["dbExists"] == {str(tmp_path / "r0"): True, str(tmp_path / "r1"): False}
    other = fixture_graph()
    other["target"]["token"] = " Lyon"
    assert page_data(other, {})["storageKey"] != data["storageKey"]


def test_cards_none_reads_the_databases(tmp_path):
    write_feature_db(tmp_path / "r0" / "features.sqlite", explained={11: ["capital cities"]})
    graph = fixture_graph({0: str(tmp_path / "r0")})
    path = tmp_path / "graph.html"
    write_graph_page(graph, path)
    data = _data(path.read_text())
    card = data["cards"][data["cardOf"]["feat:0:1:11"]]
    assert card["explanation"] == "capital cities"
    layer0 = {n["id"] for n in graph["nodes"] if n["kind"] == "feature" and n["layer"] == 0}
    assert set(data["cardOf"]) == layer0
