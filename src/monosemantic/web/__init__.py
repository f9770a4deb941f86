"""The feature browser: `monosemantic serve RUN` (FastAPI app + uvicorn).

`create_app(ServeConfig(run))` builds the ASGI app; `serve(cfg)` runs it. Needs the `web` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monosemantic.web.server import ServeConfig, serve

if TYPE_CHECKING:
    from fastapi import FastAPI

    from monosemantic.web.backend import ModelBackend

__all__ = ["ServeConfig", "create_app", "serve"]


def create_app(cfg: ServeConfig, backend: ModelBackend | None = None) -> FastAPI:
    """The ASGI app for `cfg` (imported lazily: FastAPI is an optional dependency)."""
    from monosemantic.web.app import create_app as _create

    return _create(cfg, backend)
