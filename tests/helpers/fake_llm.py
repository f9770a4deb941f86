"""A small HTTP server on loopback that speaks the OpenAI chat-completions and Anthropic
Messages APIs, for tests of the real client code: scripted failures (delays, 429 with
Retry-After, 500, malformed bodies, 401) and a pluggable answer function."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Fault:
    """One scripted response instead of an answer: an HTTP status (with optional headers and
    raw body) and/or a delay before responding."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0


Answer = Callable[[list[dict[str, str]]], str]


class FakeLLMServer:
    """`with FakeLLMServer(answer) as srv:` -> `srv.url`; `srv.requests` lists what came in;
    `srv.faults` is consumed one per request before answers are given."""

    def __init__(self, answer: Answer, key: str = "test-key"):
        self.answer = answer
        self.key = key
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers),
                                            "body": body})
                    fault = server.faults.pop(0) if server.faults else None
                if fault is not None:
                    time.sleep(fault.delay)
                    if fault.status != 200 or fault.body is not None:
                        self._send(fault.status, fault.body or b'{"error": "scripted"}',
                                   fault.headers)
                        return
                self._answer(body)

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _answer(self, body: dict[str, Any]) -> None:
                if self.path.endswith("/chat/completions"):
                    if self.headers.get("authorization") != f"Bearer {server.key}":
                        return self._send(401, b'{"error": {"message": "bad key"}}')
                    text = server.answer(body["messages"])
                    out = {"choices": [{"message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": _count(body["messages"]),
                                     "completion_tokens": len(text.split())}}
                elif self.path.endswith("/v1/messages"):
                    if (self.headers.get("x-api-key") != server.key
                            or not self.headers.get("anthropic-version")):
                        return self._send(401, b'{"type": "error"}')
                    messages = body["messages"]
                    if body.get("system"):
                        messages = [{"role": "system", "content": body["system"]}] + messages
                    text = server.answer(messages)
                    out = {"content": [{"type": "text", "text": text}],
                           "usage": {"input_tokens": _count(messages),
                                     "output_tokens": len(text.split())}}
                else:
                    return self._send(404, b'{"error": "no such path"}')
                self._send(200, json.dumps(out).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _count(messages: list[dict[str, str]]) -> int:
    """Token count stand-in: whitespace-separated words of every message."""
    return sum(len(m["content"].split()) for m in messages)
