"""LLM backends behind one interface: `complete(messages, *, max_tokens, temperature,
response_format) -> Completion`. `LLMOptions` (a config dataclass that commands inherit, so its
fields are their `--llm`, `--model`, `--base-url`, ... options) builds one with `make_backend`."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from monosemantic.errors import UserError
from monosemantic.interp.backends.base import (
    Backend,
    BackendError,
    Completion,
    HTTPOptions,
    Message,
    TransientError,
)
from monosemantic.interp.pricing import Prices

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

__all__ = ["Backend", "BackendError", "Completion", "HTTPOptions", "LLMOptions", "Message",
           "TransientError", "make_backend"]

DEFAULT_MODELS = {"local": "gemma-3-270m", "anthropic": "claude-3-5-haiku-latest"}


@dataclass(kw_only=True)
class LLMOptions:
    """Which LLM explains / judges, and how it is called."""

    llm: Literal["local", "openai", "anthropic"] = "local"
    """Backend: local (a Hugging Face model run here, offline), openai (any OpenAI-compatible
    server: OpenAI, vLLM, llama.cpp, Ollama), anthropic (the Anthropic Messages API)."""
    model: str | None = None
    """Model name: local -> a spec for load_model (default gemma-3-270m, or a local model
    directory); openai / anthropic -> the API's model name (required for openai)."""
    base_url: str | None = None
    """Server URL (openai: e.g. http://localhost:8000/v1; default the vendor's API)."""
    api_key_env: str | None = None
    """Environment variable holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY).
    The key itself is never logged or stored."""
    timeout: float = 120.0
    """Seconds to wait for one HTTP response."""
    max_retries: int = 5
    """Retries on 429, 5xx, timeouts and malformed bodies (exponential backoff, Retry-After
    honoured)."""
    concurrency: int = 4
    """Calls in flight at once (HTTP backends; the local model runs one call at a time)."""
    price_in: float | None = None
    """USD per million input tokens (overrides the built-in table; unknown -> cost unknown)."""
    price_out: float | None = None
    """USD per million output tokens."""
    cache: str | None = None
    """SQLite file caching every call (default RUN/llm_cache.sqlite); 'off' disables it."""
    llm_device: str = "cpu"
    """Torch device of the local model."""
    json_mode: bool = True
    """Ask OpenAI-compatible servers for JSON output (response_format json_object); set false
    for a server that rejects it (answers are parsed strictly either way)."""

    def model_name(self) -> str:
        if self.model:
            return self.model
        if self.llm == "openai":
            raise UserError("--llm openai needs --model (the server's model name)")
        return DEFAULT_MODELS[self.llm]


def make_backend(opts: LLMOptions, lm: LoadedModel | None = None) -> Backend:
    """The backend `opts` names (`lm`: an already loaded model for the local one)."""
    if (opts.price_in is None) != (opts.price_out is None):
        raise UserError("give both --price-in and --price-out (USD per million tokens)")
    if opts.concurrency < 1 or opts.max_retries < 0 or opts.timeout <= 0:
        raise UserError("--concurrency must be >= 1, --max-retries >= 0, --timeout > 0")
    prices = Prices(per_million=None if opts.price_in is None or opts.price_out is None else
                    (float(opts.price_in), float(opts.price_out)))
    http = HTTPOptions(timeout=opts.timeout, max_retries=opts.max_retries)
    model = opts.model_name()
    if opts.llm == "local":
        from monosemantic.interp.backends.local import LocalBackend

        return LocalBackend(model, device=opts.llm_device, lm=lm)
    if importlib.util.find_spec("httpx") is None:
        raise UserError(f"--llm {opts.llm} needs httpx: pip install 'monosemantic[autointerp]'")
    if opts.llm == "openai":
        from monosemantic.interp.backends.openai import OpenAIBackend

        return OpenAIBackend(model, opts.base_url, opts.api_key_env or "OPENAI_API_KEY", http,
                             prices, json_mode=opts.json_mode)
    if opts.llm == "anthropic":
        from monosemantic.interp.backends.anthropic import AnthropicBackend

        return AnthropicBackend(model, opts.base_url, opts.api_key_env or "ANTHROPIC_API_KEY",
                                http, prices)
    raise UserError(f"unknown backend {opts.llm!r}: local, openai or anthropic")
