"""One model job at a time, with a bounded queue, off the event loop.

Model-backed requests (inspect, steer) run in a single worker thread, so the event loop keeps
serving pages and the model sees one job at a time. At most `max_pending` jobs (running +
waiting) exist at once; one more is refused at once with `QueueFull` (the API answers 503)
instead of waiting for a slot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    """Every slot of the model queue is taken."""


class JobQueue:
    """`await queue.run(fn)` runs `fn()` in the worker thread, or raises `QueueFull`."""

    def __init__(self, max_pending: int = 4):
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monosemantic-model")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._pending >= self.max_pending:
                raise QueueFull(f"the model is busy ({self._pending} jobs running or queued, "
                                f"the limit is {self.max_pending}): try again in a moment")
            self._pending += 1
        try:
            future = self._pool.submit(fn)
        except RuntimeError:
            self._release()
            raise
        # The slot is freed when the job ends, even if the client went away meanwhile.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
