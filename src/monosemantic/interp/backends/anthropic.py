"""The Anthropic Messages API (`POST {base_url}/v1/messages`, `x-api-key` header)."""

from __future__ import annotations

import os
from typing import Any

from monosemantic.interp.backends.base import (
    BackendError,
    Completion,
    HTTPOptions,
    Message,
    ResponseFormat,
    check_messages,
)
from monosemantic.interp.backends.http import HTTPChatBackend
from monosemantic.interp.pricing import Prices

ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"


class AnthropicBackend(HTTPChatBackend):
    """Claude models through the Messages API; the key is read from the environment."""

    name = "anthropic"

    def __init__(self, model: str, base_url: str | None = None,
                 api_key_env: str = "ANTHROPIC_API_KEY", http: HTTPOptions | None = None,
                 prices: Prices | None = None):
        key = os.environ.get(api_key_env, "")
        if not key:
            raise BackendError(f"the Anthropic API needs a key: set ${api_key_env}")
        url = (base_url or ANTHROPIC_URL).rstrip("/").removesuffix("/v1") + "/v1/messages"
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION,
                   "content-type": "application/json"}
        super().__init__(model, url, headers, api_key_env, http, prices)

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float,
                 response_format: ResponseFormat = "text") -> Completion:
        # The Messages API has no JSON mode; the prompt asks for JSON and the caller parses
        # strictly (with a retry), so response_format needs nothing here.
        check_messages(messages)
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": max_tokens, "temperature": temperature,
            "messages": [m for m in messages if m["role"] != "system"]}
        if system:
            body["system"] = system
        return self._post(body)

    def _parse(self, data: Any) -> Completion:
        parts = [block["text"] for block in data["content"] if block.get("type") == "text"]
        if not parts:
            raise ValueError("no text block in content")
        usage = data["usage"]
        n_in, n_out = int(usage["input_tokens"]), int(usage["output_tokens"])
        return Completion("".join(parts), n_in, n_out, self.prices.cost(self.model, n_in, n_out))
