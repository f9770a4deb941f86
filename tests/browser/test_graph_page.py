"""The attribution graph page (graph/page.py), opened from disk in headless Chromium."""

import json

import pytest

from helpers.graph_fixture import VOCAB, fixture_graph, large_graph, write_feature_db
from monosemantic.graph.page import write_graph_page

EXPLAINED = "capital cities of Europe"


@pytest.fixture
def graph_case(tmp_path):
    write_feature_db(tmp_path / "r0" / "features.sqlite", explained={11: [EXPLAINED]})
    graph = fixture_graph({0: str(tmp_path / "r0"), 1: str(tmp_path / "r1")})
    path = tmp_path / "graph.html"
    write_graph_page(graph, path)
    return graph, path


def _open(browser, path, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        ("file:", "data:")) else None)
    pg.goto(path.as_uri())
    return context, pg, errors, outside


@pytest.fixture
def file_page(browser, graph_case, tmp_path, request):
    context, pg, errors, outside = _open(browser, graph_case[1], tmp_path)
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        pg.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"the page requested files from outside: {outside}"


def _node(pg, node_id):
    return pg.locator(f'g.node[data-id="{node_id}"]')


def _shown_edges(pg):
    return pg.locator("line.edge:not(.off)").count()


def _set_slider(pg, value):
    pg.eval_on_selector("#threshold", "(s, v) => { s.value = v; "
                        "s.dispatchEvent(new Event('input')); }", value)


def test_nodes_edges_and_columns_render(file_page, graph_case):
    graph = graph_case[0]
    assert file_page.locator("g.node").count() == len(graph["nodes"])
    assert file_page.locator("g.node.feature").count() == 24
    assert file_page.locator("g.node.logit").count() == 2
    assert file_page.locator("line.edge").count() == len(graph["edges"])
    assert _shown_edges(file_page) == len(graph["edges"])
    labels = file_page.eval_on_selector_all("text.col", "ts => ts.map(t => t.textContent)")
    assert labels == [json.dumps(t) for t in graph["tokens"]]
    # tokens at the bottom, logits at the top
    y = {n: float(_node(file_page, n).locator("circle").get_attribute("cy"))
         for n in ("tok:1", "feat:0:1:10", "feat:2:1:210", "logit:7127")}
    assert y["tok:1"] > y["feat:0:1:10"] > y["feat:2:1:210"] > y["logit:7127"]
    # edges are coloured by sign
    negative = sum(e["weight"] < 0 for e in graph["edges"])
    assert file_page.locator("line.edge.neg").count() == negative > 0


def test_slider_hides_weak_edges(file_page, graph_case):
    graph = graph_case[0]
    top = max(abs(e["weight"]) for e in graph["edges"])
    _set_slider(file_page, 500)
    expected = sum(abs(e["weight"]) >= top * 0.5 for e in graph["edges"])
    assert 0 < expected < len(graph["edges"])
    assert _shown_edges(file_page) == expected
    assert file_page.locator("#edge-count").text_content() == (
        f"{expected} of {len(graph['edges'])} edges shown")
    weak = min(graph["edges"], key=lambda e: abs(e["weight"]))
    line = file_page.locator(f'line.edge[data-source="{weak["source"]}"]'
                             f'[data-target="{weak["target"]}"]')
    assert not line.is_visible()
    _set_slider(file_page, 0)
    assert _shown_edges(file_page) == len(graph["edges"])


def test_click_shows_the_feature_card(file_page):
    _node(file_page, "feat:0:1:11").click()
    panel = file_page.locator("#panel")
    assert panel.locator("h2").text_content() == "L0 #11"
    assert panel.locator(".explanation").text_content() == EXPLAINED
    assert "density 2.10%" in panel.locator(".density").text_content()
    chips = panel.locator(".chip").all_text_contents()
    assert chips[0] == json.dumps(VOCAB[6]) + " \u00d72"
    peaks = panel.locator(".ex .peak").all_text_contents()
    assert peaks == [VOCAB[6], VOCAB[6], VOCAB[2]]
    assert "pinned" in (_node(file_page, "feat:0:1:11").get_attribute("class") or "")


def test_feature_without_database_says_how_to_make_one(file_page, graph_case):
    _node(file_page, "feat:1:1:110").click()
    missing = file_page.locator("#panel .missing")
    run = str(graph_case[1].parent / "r1")
    assert missing.text_content() == f"no feature database: run monosemantic analyze {run}"
    assert missing.locator("code").text_content() == f"monosemantic analyze {run}"


def test_hover_highlights_the_nodes_edges(file_page, graph_case):
    graph = graph_case[0]
    node = "feat:1:2:120"
    touching = [e for e in graph["edges"] if node in (e["source"], e["target"])]
    assert touching
    _node(file_page, node).hover()
    assert file_page.locator("line.edge.hl").count() == len(touching)
    assert file_page.locator("#panel h2").text_content() == "L1 #120"
    assert file_page.locator("#panel").text_content().count("strongest") >= 1
    file_page.mouse.move(2, 2)
    assert file_page.locator("line.edge.hl").count() == 0


def _group(pg, ids, name):
    _node(pg, ids[0]).click()
    for node_id in ids[1:]:
        _node(pg, node_id).click(modifiers=["Shift"])
    assert pg.locator("g.node.sel").count() == len(ids)
    pg.fill("#group-name", name)
    pg.click("#group")


def test_group_sums_edges_survives_reload_and_ungroups(file_page, graph_case):
    graph = graph_case[0]
    n_nodes = len(graph["nodes"])
    members = ["feat:0:2:20", "feat:0:2:21", "feat:0:4:40"]
    _group(file_page, members, "capital")
    group = _node(file_page, "group:capital")
    assert group.count() == 1
    assert file_page.locator("g.node").count() == n_nodes - len(members) + 1
    for m in members:
        assert _node(file_page, m).count() == 0
    # the group's edge to each target carries the sum of its members' edges
    sums: dict[str, float] = {}
    for e in graph["edges"]:
        if e["source"] in members and e["target"] not in members:
            sums[e["target"]] = sums.get(e["target"], 0.0) + e["weight"]
    assert sums
    drawn = file_page.eval_on_selector_all(
        'line.edge[data-source="group:capital"]',
        "ls => ls.map(l => [l.dataset.target, Number(l.dataset.weight)])")
    assert {t: round(w, 9) for t, w in drawn} == {t: round(w, 9) for t, w in sums.items()}
    assert "supernode of 3 nodes" in file_page.locator("#panel").text_content()

    file_page.reload()
    assert _node(file_page, "group:capital").count() == 1
    assert file_page.locator("g.node").count() == n_nodes - len(members) + 1

    _node(file_page, "group:capital").click()
    file_page.click("#ungroup")
    assert _node(file_page, "group:capital").count() == 0
    assert file_page.locator("g.node").count() == n_nodes
    assert file_page.locator("line.edge").count() == len(graph["edges"])
    file_page.reload()
    assert file_page.locator("g.node").count() == n_nodes


def test_a_taken_name_or_a_single_node_is_refused(file_page, graph_case):
    _group(file_page, ["tok:1", "tok:2"], "words")
    _group(file_page, ["tok:3", "tok:4"], "words")
    assert file_page.locator("#status").text_content() == "a group named words exists"
    assert _node(file_page, "tok:3").count() == 1
    _node(file_page, "tok:5").click()
    file_page.click("#group")
    assert "select two nodes or more" in file_page.locator("#status").text_content()
    assert file_page.locator("g.node.group").count() == 1


def test_export_gives_the_groups_as_json(file_page, tmp_path):
    _group(file_page, ["feat:1:1:110", "feat:1:1:111"], "pair")
    _group(file_page, ["tok:3", "tok:4"], "tokens")
    with file_page.expect_download() as info:
        file_page.click("#export")
    download = info.value
    assert download.suggested_filename == "supernodes.json"
    saved = tmp_path / "exported.json"
    download.save_as(saved)
    assert json.loads(saved.read_text()) == {"pair": ["feat:1:1:110", "feat:1:1:111"],
                                             "tokens": ["tok:3", "tok:4"]}


def test_import_replaces_groups_and_drops_unknown_ids(file_page, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"imported": ["tok:1", "tok:2", "feat:9:9:9"]}))
    file_page.set_input_files("#import", str(groups))
    # The page reads the file asynchronously (FileReader): wait for the group to be drawn.
    _node(file_page, "group:imported").wait_for(state="attached", timeout=15_000)
    assert _node(file_page, "group:imported").count() == 1
    assert _node(file_page, "tok:1").count() == 0
    assert "1 unknown or repeated node id(s) dropped" in (
        file_page.locator("#status").text_content())


def test_groups_are_kept_per_graph(browser, graph_case, tmp_path):
    other = fixture_graph()
    other["prompt"] = "Another prompt"
    other_path = tmp_path / "other.html"
    write_graph_page(other, other_path, {})
    context, pg, errors, _ = _open(browser, graph_case[1], tmp_path)
    try:
        _group(pg, ["tok:1", "tok:2"], "mine")
        pg.goto(other_path.as_uri())
        assert pg.locator("g.node.group").count() == 0
        pg.goto(graph_case[1].as_uri())
        assert pg.locator("g.node.group").count() == 1
    finally:
        context.close()
    assert not errors


def test_a_large_graph_renders_and_groups(browser, tmp_path):
    graph = large_graph(500, 5000)
    path = tmp_path / "large.html"
    write_graph_page(graph, path, {})
    context, pg, errors, _ = _open(browser, path, tmp_path)
    try:
        assert pg.locator("g.node").count() == 500
        assert pg.locator("line.edge").count() == 5000
        # at most 1,500 edges are shown at first; the slider shows them all
        shown = _shown_edges(pg)
        assert 0 < shown <= 1500
        _set_slider(pg, 0)
        assert _shown_edges(pg) == 5000
        feats = [n["id"] for n in graph["nodes"] if n["kind"] == "feature"][:4]
        _group(pg, feats, "big")
        assert pg.locator("g.node").count() == 500 - 4 + 1
    finally:
        context.close()
    assert not errors
