"""Browser tests: the real uvicorn server on a free loopback port, driven by headless Debian
Chromium through Playwright. Without /usr/bin/chromium they skip, except under CI=1, where they
fail. A failing test leaves a screenshot in its tmp_path."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MONOSEMANTIC_CHROMIUM", "/usr/bin/chromium"))


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so browser tests must run)")
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Chromium's path, checked before any (session-scoped, slow) run is built."""
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed (pip install playwright)")
    return CHROMIUM


@pytest.fixture(scope="session")
def web_runs(chromium, tmp_path_factory, tiny_model_dir):
    from helpers.web_run import annotate_copy, build_tiny_run

    root = tmp_path_factory.mktemp("web_browser")
    run = build_tiny_run(root, tiny_model_dir)
    return run, annotate_copy(run, root / "annotated")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def base_url(web_runs):
    pytest.importorskip("fastapi")
    import uvicorn

    from monosemantic.web import ServeConfig, create_app

    port = _free_port()
    app = create_app(ServeConfig(web_runs[1], port=port, device="cpu"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium):
    # Module scope: Playwright's sync API runs an event loop in this thread until it exits,
    # which would break later tests that call asyncio.run.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium), headless=True,
                               args=["--no-sandbox", "--disable-gpu",
                                     "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url, request, tmp_path):
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # Anything not served by the app itself (a CDN) would show up here.
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        (base_url, "data:")) else None)
    pg.js_errors = errors
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        shot = tmp_path / "failure.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failure: {shot}")
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"requests outside the app: {outside}"
