"""graph/cards.py: feature cards for the graph page, read from the runs' feature databases."""

import sqlite3

from helpers.graph_fixture import VOCAB, fixture_graph, write_feature_db
from monosemantic.graph.cards import feature_cards


def _graph(tmp_path, explained=None):
    write_feature_db(tmp_path / "r0" / "features.sqlite", explained=explained)
    return fixture_graph({0: str(tmp_path / "r0"), 1: str(tmp_path / "r1")})


def test_cards_only_for_features_whose_run_has_a_database(tmp_path):
    graph = _graph(tmp_path)
    cards = feature_cards(graph)
    layer0 = {n["id"] for n in graph["nodes"] if n["kind"] == "feature" and n["layer"] == 0}
    assert layer0 and set(cards) == layer0
    assert all(c["run"] == str(tmp_path / "r0") for c in cards.values())


def test_card_content(tmp_path):
    graph = _graph(tmp_path, explained={11: ["first try", "capital cities"]})
    card = feature_cards(graph, examples=2, before=3, after=2)["feat:0:1:11"]
    assert card["feature"] == 11
    assert card["explanation"] == "capital cities"  # the latest
    assert card["density"] == 21 / 1000 and card["count"] == 21
    assert card["max_act"] == 2.0
    # feature 11 peaks on token 1 + 11 % 6 = 6 twice, on token 2 once
    assert card["top_tokens"] == [[VOCAB[6], 2], [VOCAB[2], 1]]
    assert len(card["examples"]) == 2
    for ex in card["examples"]:
        assert len(ex["tokens"]) == 6 and ex["peak"] == 3
        assert ex["tokens"][ex["peak"]] == VOCAB[6]
        assert ex["acts"][ex["peak"]] == ex["activation"]
        assert ex["acts"][ex["peak"] - 1] == 0.3
    assert card["logits_up"] == [[VOCAB[1], 0.5]]
    assert feature_cards(graph)["feat:0:2:20"]["explanation"] is None


def test_nodes_of_one_feature_share_a_card(tmp_path):
    graph = _graph(tmp_path)
    node = next(n for n in graph["nodes"] if n["id"] == "feat:0:1:11")
    graph["nodes"].append(dict(node, id="feat:0:5:11", pos=5))
    cards = feature_cards(graph)
    assert cards["feat:0:5:11"] is cards["feat:0:1:11"]
    assert cards["feat:0:1:10"] is not cards["feat:0:1:11"]


def test_feature_outside_the_database_gives_an_error_card(tmp_path):
    write_feature_db(tmp_path / "r1" / "features.sqlite", n_features=112)
    graph = fixture_graph({1: str(tmp_path / "r1")})
    cards = feature_cards(graph)
    assert "error" not in cards["feat:1:1:111"]
    assert "feature 112 is not in" in cards["feat:1:1:112"]["error"]


def test_database_of_another_schema_gives_error_cards(tmp_path):
    db = write_feature_db(tmp_path / "r0" / "features.sqlite", n_features=8)
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    cards = feature_cards(fixture_graph({0: str(tmp_path / "r0")}))
    assert cards and all("schema version 99" in c["error"] for c in cards.values())


def test_graph_without_runs_has_no_cards():
    assert feature_cards(fixture_graph()) == {}
