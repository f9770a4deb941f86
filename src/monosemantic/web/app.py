"""`create_app(cfg)`: the browser's ASGI app (pages, /api, /static, errors as JSON).

Pages are thin HTML shells rendered from package templates; their scripts (package files under
static/) fetch the JSON API and draw everything client-side. No page handler touches the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monosemantic.errors import UserError
from monosemantic.web.api import router
from monosemantic.web.backend import ModelBackend
from monosemantic.web.jobs import JobQueue
from monosemantic.web.rundata import RunData, UnknownFeature
from monosemantic.web.server import ServeConfig

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"
PAGES = {"/": ("overview.html", "Overview"), "/search": ("search.html", "Search"),
         "/inspect": ("inspect.html", "Prompt inspector"),
         "/steer": ("steer.html", "Steering playground"), "/map": ("map.html", "Feature map"),
         "/docs": ("apidocs.html", "API")}
# Scripts, styles, data and connections from this server only: no CDN, no inline script.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

_SECURITY_HEADERS = ((b"content-security-policy", CSP.encode()),
                     (b"x-content-type-options", b"nosniff"))
# Bodies are a prompt and a few edits; anything larger is refused before it is parsed.
MAX_BODY_BYTES = 1_000_000

log = logging.getLogger("monosemantic.web")


def _json_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[int, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
    return 422, "invalid request: " + "; ".join(parts)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if message == "Not Found":  # Starlette's default: say what was not found
            message = f"nothing at {request.url.path[:200]}"
        return _json_error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("type", "loc", "msg")} for e in exc.errors()]
        status, message = _validation_message(errors)
        return _json_error(status, message, errors=errors)

    @app.exception_handler(UnknownFeature)
    async def unknown_feature(request: Request, exc: UnknownFeature) -> JSONResponse:
        return _json_error(404, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return _json_error(400, str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log, never to the client.
        log.exception("error while serving %s", request.url.path)
        return _json_error(500, f"internal error ({type(exc).__name__}); see the server log")


def _add_pages(app: FastAPI, templates: Jinja2Templates) -> None:
    def page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
        data: RunData = request.app.state.data
        return templates.TemplateResponse(request, template, {
            "title": title, "run": data.run.name, "n_features": data.n_features,
            "model": data.db.meta.get("model"), "hook": data.sites, **context})

    for path, (template, title) in PAGES.items():
        async def handler(request: Request, _t: str = template,
                          _title: str = title) -> HTMLResponse:
            return page(request, _t, _title)
        app.add_api_route(path, handler, methods=["GET"], response_class=HTMLResponse,
                          include_in_schema=False)

    @app.get("/feature/{feature_id}", response_class=HTMLResponse, include_in_schema=False)
    async def feature_page(feature_id: str, request: Request) -> HTMLResponse:
        n = request.app.state.data.n_features
        if not feature_id.isdigit() or int(feature_id) >= n:
            response = page(request, "missing.html", "No such feature", feature_id=feature_id)
            response.status_code = 404
            return response
        return page(request, "feature.html", f"Feature {int(feature_id)}",
                    feature_id=int(feature_id))


class SecurityHeaders:
    """Pure ASGI middleware (Starlette's `BaseHTTPMiddleware` costs about a millisecond per
    request): refuses oversized bodies before they are read, and adds the CSP and nosniff
    headers to every response, with `Server-Timing: app;dur=MS` (time in the app until the
    response starts; the load benchmark reports it beside the client-side latency)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await _json_error(413, f"request body over {MAX_BODY_BYTES:,} bytes")(
                scope, receive, send)
            return

        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                timing = f"app;dur={1e3 * (time.perf_counter() - start):.2f}".encode()
                message = dict(message, headers=[*message.get("headers", []),
                                                 *_SECURITY_HEADERS, (b"server-timing", timing)])
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(cfg: ServeConfig, backend: ModelBackend | None = None) -> FastAPI:
    """The app for `cfg` (a `ServeConfig`); `backend` replaces the lazily loaded model backend
    (tests)."""
    data = RunData(cfg.run, cfg.model_options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Warm the map and token-search caches off the request path.
        threading.Thread(target=data.warm, name="monosemantic-warm", daemon=True).start()
        yield
        app.state.jobs.shutdown()
        data.close()

    # FastAPI's own /docs loads Swagger UI from a CDN; ours (templates/apidocs.html) does not.
    app = FastAPI(title=f"monosemantic browser: {data.run.name}",
                  description="Feature browser API over a run's feature database.",
                  version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.data = data
    app.state.jobs = JobQueue(cfg.queue)
    # The model side opens the run the pages read (e.g. RUN when given RUN/sae).
    model = cfg.model_options.model
    app.state.backend = backend or ModelBackend(data.run, data.max_act_F, cfg.device, model)
    app.state.limits = {"max_prompt_chars": cfg.max_prompt_chars, "max_edits": cfg.max_edits,
                        "max_multiplier": cfg.max_multiplier,
                        "max_new_tokens": cfg.max_new_tokens, "max_filter_prompts": 16}

    app.add_middleware(SecurityHeaders)
    _add_error_handlers(app)
    app.include_router(router)
    _add_pages(app, Jinja2Templates(directory=str(TEMPLATE_DIR)))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    app.add_api_route("/api/{rest:path}", _no_such_endpoint, methods=["GET", "POST"],
                      include_in_schema=False)
    return app


def _no_such_endpoint(rest: str) -> None:
    raise HTTPException(404, f"no API endpoint /api/{rest[:100]}")
