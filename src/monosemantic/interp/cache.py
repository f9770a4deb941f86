"""Every LLM call cached in SQLite by (backend, model, messages, sampling parameters), so a
re-run costs nothing; a client that counts tokens and cost, and limits calls in flight."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monosemantic.interp.backends.base import (
    Backend,
    Completion,
    Message,
    ResponseFormat,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,               -- JSON: messages and sampling parameters (no key)
    text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL,                       -- NULL = price unknown
    created TEXT NOT NULL
);
"""


def cache_key(backend: str, model: str, request: dict[str, Any]) -> str:
    blob = json.dumps([backend, model, request], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CallCache:
    """A thread-safe SQLite cache of completions."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._con:
            self._con.executescript(_SCHEMA)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._con.execute("SELECT text, input_tokens, output_tokens, cost_usd FROM "
                                    "calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else Completion(*row, cached=True)

    def put(self, key: str, backend: str, model: str, request: dict[str, Any],
            done: Completion) -> None:
        with self._lock, self._con:
            self._con.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, backend, model, json.dumps(request, ensure_ascii=False), done.text,
                 done.input_tokens, done.output_tokens, done.cost_usd,
                 datetime.now(UTC).isoformat(timespec="seconds")))

    def close(self) -> None:
        self._con.close()


@dataclass
class Usage:
    """Calls, tokens and cost of a run. Cached calls cost nothing now and are counted apart."""

    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    cost_usd: float | None = 0.0
    """USD spent on fresh calls; None once any fresh call had an unknown price."""

    def add(self, done: Completion) -> None:
        if done.cached:
            self.cached_calls += 1
            self.cached_input_tokens += done.input_tokens
            self.cached_output_tokens += done.output_tokens
            return
        self.calls += 1
        self.input_tokens += done.input_tokens
        self.output_tokens += done.output_tokens
        if self.cost_usd is not None:
            self.cost_usd = None if done.cost_usd is None else self.cost_usd + done.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        cost = "unknown (no price for this model)" if self.cost_usd is None else \
            f"${self.cost_usd:.4f}"
        return (f"{self.calls} LLM calls ({self.input_tokens:,} in + {self.output_tokens:,} out "
                f"tokens, cost {cost}); {self.cached_calls} answered from the cache")


class LLMClient:
    """A backend behind the cache, with usage accounting and a limit on calls in flight."""

    def __init__(self, backend: Backend, cache: CallCache | None = None, concurrency: int = 4):
        self.backend = backend
        self.cache = cache
        self.usage = Usage()
        self._slots = threading.Semaphore(concurrency)
        self._usage_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.backend.name}/{self.backend.model}"

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
                 response_format: ResponseFormat = "text") -> Completion:
        request = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                   "response_format": response_format}
        key = cache_key(self.backend.name, self.backend.model, request)
        done = self.cache.get(key) if self.cache is not None else None
        if done is None:
            with self._slots:
                done = self.backend.complete(messages, max_tokens=max_tokens,
                                             temperature=temperature,
                                             response_format=response_format)
            if self.cache is not None:
                self.cache.put(key, self.backend.name, self.backend.model, request, done)
        with self._usage_lock:
            self.usage.add(done)
        return done
