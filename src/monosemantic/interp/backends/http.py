"""POST JSON with retries: exponential backoff on 429 / 5xx / timeouts / malformed bodies
(honouring Retry-After), a clear BackendError for a wrong key or an unreachable server.

The API key travels only in request headers; it is never put in an error message, a log line,
the cache or a result.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from monosemantic.interp.backends.base import (
    BackendError,
    Completion,
    HTTPOptions,
    TransientError,
)
from monosemantic.interp.pricing import Prices

__all__ = ["HTTPChatBackend", "HTTPOptions", "backoff_delay", "post_json", "retry_after_seconds"]

T = TypeVar("T")

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_delay(attempt: int, opts: HTTPOptions, retry_after: float | None,
                  rng: random.Random) -> float:
    """Delay before retry number `attempt` (0-based)."""
    if retry_after is not None:
        return min(retry_after, opts.max_backoff)
    return min(opts.max_backoff, opts.backoff * 2 ** attempt) * rng.uniform(0.5, 1.0)


def _check_status(resp: httpx.Response, url: str, key_hint: str) -> None:
    status = resp.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise BackendError(f"{url} refused the request (HTTP {status}): {key_hint}")
    if status in _RETRY_STATUS:
        raise TransientError(f"HTTP {status} from {url}",
                             retry_after_seconds(resp.headers.get("retry-after")))
    detail = resp.text[:300].replace("\n", " ")
    if status == 404:
        raise BackendError(f"{url} answered 404 (check the base URL and the model name): {detail}")
    raise BackendError(f"{url} answered HTTP {status}: {detail}")


def post_json(client: httpx.Client, url: str, headers: dict[str, str], body: dict[str, Any],
              parse: Callable[[Any], T], opts: HTTPOptions, key_hint: str,
              sleep: Callable[[float], None] = time.sleep) -> T:
    """POST `body` to `url` and return `parse(json)`, retrying transient failures.

    `parse` raises TransientError (or KeyError / TypeError / ValueError) on a malformed body,
    which is retried like a 5xx.
    """
    rng = random.Random()
    last = ""
    for attempt in range(opts.max_retries + 1):
        retry_after = None
        try:
            resp = client.post(url, headers=headers, json=body, timeout=opts.timeout)
            _check_status(resp, url, key_hint)
            try:
                return parse(resp.json())
            except (KeyError, IndexError, TypeError, ValueError) as err:
                raise TransientError(f"malformed response body from {url} ({err!r})") from err
        except TransientError as err:
            last, retry_after = str(err), err.retry_after
        except httpx.TimeoutException:
            last = f"no answer from {url} within {opts.timeout:g} s"
        except httpx.TransportError as err:
            last = f"cannot reach {url} ({type(err).__name__}: {err})"
        if attempt < opts.max_retries:
            sleep(backoff_delay(attempt, opts, retry_after, rng))
    raise BackendError(f"giving up after {opts.max_retries + 1} attempts: {last}")


class HTTPChatBackend:
    """What the HTTP backends share: the endpoint, its headers, retry options, prices, one
    connection pool; subclasses build the request body and parse the answer (`_parse`)."""

    def __init__(self, model: str, url: str, headers: dict[str, str], api_key_env: str,
                 http: HTTPOptions | None, prices: Prices | None):
        self.model = model
        self.url = url
        self.http = http or HTTPOptions()
        self.prices = prices or Prices()
        self._headers = headers
        self._key_hint = f"check the key in ${api_key_env}"
        self._client = httpx.Client()
        self.sleep = time.sleep
        """How retries wait (tests replace it to record the delays)."""

    def _post(self, body: dict[str, Any]) -> Completion:
        return post_json(self._client, self.url, self._headers, body, self._parse, self.http,
                         self._key_hint, self.sleep)

    def _parse(self, data: Any) -> Completion:
        raise NotImplementedError
