"""`bench RUN ...`'s self-contained compare page, opened from disk in headless Chromium."""

import pytest

from monosemantic.bench.page import compare_page

COLUMNS = ["run", "l0", "variance_explained"]
ROWS = [["b", 32.0, 0.95], ["a", 8.0, None], ["c", 120.5, 0.99], ["d", 16.0, 0.5]]


@pytest.fixture
def page_file(tmp_path):
    report = {"consistency": [], "results": {}, "bench": {"runs": 4}}
    path = tmp_path / "compare.html"
    path.write_text(compare_page(report, COLUMNS, ROWS, []))
    return path


@pytest.fixture
def file_page(browser, page_file):
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        ("file:", "data:")) else None)
    pg.goto(page_file.as_uri())
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"the page requested files from outside: {outside}"


def _column(pg, index):
    return pg.eval_on_selector_all(
        "table tbody tr", f"rs => rs.map(r => r.cells[{index}].textContent)")


def test_clicking_a_column_sorts_numbers_numerically_missing_last(file_page):
    assert _column(file_page, 0) == ["b", "a", "c", "d"]
    header = file_page.locator("th", has_text="variance_explained")
    header.click()
    assert _column(file_page, 0) == ["d", "b", "c", "a"]
    header.click()
    assert _column(file_page, 0) == ["c", "b", "d", "a"]
    # 8 < 16 < 32 < 120.5 as numbers (as text, "120.5" would sort before "16.0")
    file_page.locator("th", has_text="l0").click()
    assert _column(file_page, 0) == ["a", "d", "b", "c"]


def test_sorting_by_run_name(file_page):
    file_page.locator("th", has_text="run").click()
    assert _column(file_page, 0) == ["a", "b", "c", "d"]
