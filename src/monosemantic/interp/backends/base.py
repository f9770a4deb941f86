"""The one interface every LLM backend implements, and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from monosemantic.errors import UserError

Message = dict[str, str]
"""A chat message: {"role": "system" | "user" | "assistant", "content": str}."""

ResponseFormat = Literal["text", "json"]


@dataclass
class Completion:
    """One answer of a backend."""

    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """USD for this call; None when the model's price is unknown (never a silent 0)."""
    cached: bool = False
    """True when the answer came from the call cache (nothing was spent on it now)."""


class Backend(Protocol):
    """An LLM that answers chat messages."""

    name: str
    """Backend kind: local, openai, anthropic."""
    model: str
    """Model name as the backend knows it (recorded with every result)."""

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float,
                 response_format: ResponseFormat = "text") -> Completion: ...


@dataclass
class HTTPOptions:
    """Timeouts and retries of one HTTP backend."""

    timeout: float = 120.0
    """Seconds to wait for one response."""
    max_retries: int = 5
    """Retries after the first attempt on 429, 5xx, timeouts and malformed bodies."""
    backoff: float = 1.0
    """First retry delay in seconds; doubles on each retry (with jitter), unless the server
    sends Retry-After."""
    max_backoff: float = 60.0
    """Longest delay between two attempts, in seconds."""


class BackendError(UserError):
    """A backend that cannot be used as configured: wrong key, unreachable server, bad model."""


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, timeout, connection reset); `retry_after` in s."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def check_messages(messages: list[Message]) -> None:
    """Reject malformed chat messages before anything is sent."""
    if not messages:
        raise ValueError("no messages")
    for msg in messages:
        if msg.get("role") not in ("system", "user", "assistant") or not isinstance(
                msg.get("content"), str):
            raise ValueError(f"bad chat message {msg!r}")
