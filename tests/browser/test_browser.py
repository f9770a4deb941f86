"""The feature browser in headless Chromium against the real server on a tiny run."""

import re

import pytest

from helpers.web_run import EXPLAINED, N_FEATURES
from monosemantic.featuredb.reader import FeatureDB


def _feature_with_intervals(run):
    with FeatureDB(run) as db:
        for f in range(N_FEATURES):
            card = db.feature(f)
            if card.count > 0 and sum(1 for iv in card.intervals if iv.share > 0) >= 2:
                return card
    pytest.fail("no feature with two populated intervals in the tiny run")


def test_overview(page, web_runs):
    page.goto("/")
    page.wait_for_selector("main.loaded")
    assert page.locator("#summary .card").count() >= 6
    assert "topk" in page.locator("#summary").inner_text()
    assert page.locator("#eval tr[data-key=l0]").count() == 1
    assert page.locator("#eval tr[data-key=loss_recovered]").count() == 1
    # Every dead / silent figure names the tokens it covers; silence is never called dead.
    summary = page.locator("#summary").inner_text()
    assert re.search(r"dead \(no activation in the last [\d,]+ training tokens\)", summary)
    assert re.search(r"never fired in the analysis \([\d,]+ tokens\)", summary)
    assert re.search(r"silent on [\d,]+ held-out tokens", summary)
    assert re.search(r"^dead \(no activation in the last [\d,]+ training tokens\)$",
                     page.locator("#eval tr[data-key=dead_fraction] th").inner_text())
    assert re.search(r"^silent on [\d,]+ held-out tokens$",
                     page.locator("#eval tr[data-key=silent_fraction] th").inner_text())
    assert re.search(r"of [\d,]+ held-out tokens",
                     page.locator("#eval tr[data-key=dense_fraction] th").inner_text())
    assert re.search(r"dead \(no activation in the last [\d,]+ training tokens\) vs step",
                     page.locator("#curves").inner_text())
    assert re.search(r"never fired in the [\d,]+ analysed tokens",
                     page.locator("#density").inner_text())
    # Four training-curve charts with a drawn line, and the density histogram's bars.
    assert page.locator("#curves svg path.series").count() >= 4
    assert page.locator("#density svg rect.bar").count() > 0
    # Feature list: densest first; the next page continues it.
    page.wait_for_selector("#feature-list tr.hit")
    rows = page.locator("#feature-list tr.hit")
    with FeatureDB(web_runs[1]) as db:
        stats = db.stats()
    densest = max(stats, key=lambda s: (s["density"], -s["id"]))["id"]
    assert rows.first.get_attribute("data-feature") == str(densest)
    assert rows.count() == min(50, sum(s["count"] > 0 for s in stats))


def test_never_fired_feature_names_the_analysed_tokens(page, web_runs):
    with FeatureDB(web_runs[1]) as db:
        never = [s["id"] for s in db.stats() if s["count"] == 0]
        n_tokens = db.meta["n_tokens"]
    if not never:
        pytest.skip("every feature fired in this tiny run")
    page.goto(f"/feature/{never[0]}")
    page.wait_for_selector("#feature.loaded")
    stats = page.locator("#stats").inner_text()
    assert f"never fired in the {n_tokens:,} analysed tokens" in stats
    assert "dead" not in stats


def test_feature_page_tokens_and_interval_shares(page, web_runs):
    card = _feature_with_intervals(web_runs[1])
    page.goto(f"/feature/{card.id}")
    page.wait_for_selector("#feature.loaded")
    # The top example: active tokens shaded, the peak's value on hover.
    first = page.locator("#top .example").first
    active = first.locator(".tok.active")
    assert active.count() == sum(a > 0 for a in card.top[0].acts)
    style = active.first.get_attribute("style") or ""
    assert "background" in style and "rgba(255, 120, 0" in style
    peak = first.locator(".tok.peak")
    peak.hover()
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    assert re.search(r"activation [0-9.]+", tip.inner_text())
    assert float(peak.get_attribute("data-act")) == pytest.approx(card.top[0].activation,
                                                                   rel=1e-5)
    # Interval table: one row per interval, shares as in the database.
    rows = page.locator("#intervals tr.interval")
    assert rows.count() == len(card.intervals)
    shown = {int(rows.nth(i).get_attribute("data-idx")): rows.nth(i).locator(".share").inner_text()
             for i in range(rows.count())}
    for iv in card.intervals:
        assert shown[iv.idx] == f"{100 * iv.share:.1f}%"
    assert page.locator("#histogram svg rect.bar").count() == len(card.histogram["counts"])
    assert page.locator("#logits-up li").count() == len(card.logits_up)
    # Neighbours are links to other feature pages.
    link = page.locator("#neighbours a.flink").first
    target = link.get_attribute("data-feature")
    link.click()
    page.wait_for_url(f"**/feature/{target}")
    page.wait_for_selector("#feature.loaded")


def test_feature_page_try_it_on_text(page, web_runs):
    card = _feature_with_intervals(web_runs[1])
    page.goto(f"/feature/{card.id}")
    page.wait_for_selector("#feature.loaded")
    word = card.top[0].tokens[card.top[0].peak].strip()
    page.fill("#try-text", f"the {word} {word} fox")
    page.click("#try-go")
    page.wait_for_selector("#try-result .example", timeout=60_000)
    toks = page.locator("#try-result .tok")
    assert toks.count() >= 3
    assert "max on this text" in page.locator("#try-status").inner_text()


def test_feature_page_shows_explanation_and_scores(page):
    page.goto("/feature/7")
    page.wait_for_selector("#feature.loaded")
    assert EXPLAINED[7] in page.locator("#explanation").inner_text()
    assert "0.75" in page.locator("#scores").inner_text()
    assert page.locator("#neighbours .cooccurrence a.flink").first.inner_text() == "#3"


def test_search_by_explanation(page):
    page.goto("/search")
    page.fill("#q", "golden gate")
    page.press("#q", "Enter")
    page.wait_for_selector("#results tr.hit")
    hits = page.locator("#results tr.hit")
    assert hits.count() == 1 and hits.first.get_attribute("data-feature") == "7"
    assert EXPLAINED[7] in hits.first.inner_text()
    assert "q=golden+gate" in page.url  # shareable
    hits.first.locator("a.flink").click()
    page.wait_for_url("**/feature/7")


def test_filter_by_prompts(page):
    page.goto("/search")
    page.fill("#positive", "the golden gate bridge\ngolden fox")
    page.fill("#negative", "")
    page.fill("#threshold", "0")
    page.click("#filter-go")
    page.wait_for_selector("#filter-results tr.hit", timeout=60_000)
    assert "pass" in page.locator("#filter-status").inner_text()
    assert page.locator("#filter-results tr.hit a.flink").count() >= 1


def test_inspect_prompt_and_click_through(page):
    page.goto("/inspect")
    page.fill("#text", "the golden gate bridge in san francisco")
    page.click("#inspect-go")
    page.wait_for_selector("#tokens .tok", timeout=60_000)
    tokens = page.locator("#tokens .tok")
    assert tokens.count() >= 5
    tokens.nth(2).click()
    assert "selected" in tokens.nth(2).get_attribute("class")
    assert "token 2" in page.locator("#token-title").inner_text()
    rows = page.locator("#token-features tr.hit")
    assert rows.count() >= 1
    feature = rows.first.get_attribute("data-feature")
    rows.first.locator("a.flink").click()
    page.wait_for_url(f"**/feature/{feature}")
    page.wait_for_selector("#feature.loaded")


def test_steering_shows_both_continuations(page, web_runs):
    with FeatureDB(web_runs[1]) as db:
        alive = next(s["id"] for s in db.stats() if s["max_act"] > 0)
    page.goto(f"/steer?f={alive}:40")
    assert page.input_value("#edits .feat") == str(alive)
    page.fill("#prompt", "the golden gate")
    page.fill("#max_new_tokens", "6")
    page.click("#steer-go")
    page.wait_for_selector("#steered .prompt", timeout=60_000)
    unsteered = page.locator("#unsteered").inner_text()
    steered = page.locator("#steered").inner_text()
    assert unsteered.startswith("the golden gate") and steered.startswith("the golden gate")
    assert len(unsteered) > len("the golden gate")
    assert page.locator("#side-effects tr").count() >= 2
    assert f"{alive}=40x" in page.locator("#steer-status").inner_text()


def test_steering_error_is_shown(page):
    page.goto("/steer?f=1:500")
    page.click("#steer-go")
    page.wait_for_selector("#steer-status.error")
    assert "out of range" in page.locator("#steer-status").inner_text()


def test_map_hover_and_click(page):
    page.goto("/map")
    page.wait_for_selector("#map[data-ready='1']")
    assert page.evaluate("window.MSMap.count") == N_FEATURES
    assert "UMAP" in page.locator("#map-status").inner_text()
    assert re.search(r"grey = never fired in the [\d,]+ analysed tokens",
                     page.locator("#density-legend").inner_text())
    pt = page.evaluate("window.MSMap.screenPoint(7)")
    page.mouse.move(pt["x"], pt["y"])
    tip = page.locator("#tooltip")
    assert tip.is_visible() and tip.inner_text().startswith("#7")
    assert EXPLAINED[7] in tip.inner_text() and "cluster label 0" in tip.inner_text()
    # Zoom in around the point: it stays under the cursor and remains clickable.
    page.mouse.wheel(0, -600)
    page.wait_for_timeout(100)
    pt = page.evaluate("window.MSMap.screenPoint(7)")
    page.mouse.click(pt["x"], pt["y"])
    page.wait_for_url("**/feature/7")
