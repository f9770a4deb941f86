"""Any OpenAI-compatible chat server (`POST {base_url}/chat/completions`): OpenAI, vLLM,
llama.cpp server, Ollama, LM Studio."""

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

OPENAI_URL = "https://api.openai.com/v1"


def chat_url(base_url: str) -> str:
    """`.../v1/chat/completions` from a base URL given with or without its `/v1`."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class OpenAIBackend(HTTPChatBackend):
    """Chat completions over HTTP; the key (if any) is read from the environment."""

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", http: HTTPOptions | None = None,
                 prices: Prices | None = None, json_mode: bool = True):
        key = os.environ.get(api_key_env, "")
        if not key and base_url is None:
            raise BackendError(f"the OpenAI API needs a key: set ${api_key_env} (or give "
                               "--base-url for a local server that needs none)")
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        super().__init__(model, chat_url(base_url or OPENAI_URL), headers, api_key_env, http,
                         prices)
        self.json_mode = json_mode

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float,
                 response_format: ResponseFormat = "text") -> Completion:
        check_messages(messages)
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "max_tokens": max_tokens, "temperature": temperature}
        if response_format == "json" and self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return self._post(body)

    def _parse(self, data: Any) -> Completion:
        text = data["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("choices[0].message.content is not a string")
        usage = data.get("usage") or {}
        n_in, n_out = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        return Completion(text, n_in, n_out, self.prices.cost(self.model, n_in, n_out))
