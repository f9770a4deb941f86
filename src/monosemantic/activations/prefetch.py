"""Run an iterator in a background thread, `depth` items ahead of the consumer.

The work it does (numpy gathers from memory-mapped shards, dtype conversion, SHA-256) mostly
releases the GIL, so it overlaps with the consumer's compute. When the consumer stops early
(`break`, an exception, or dropping the generator), the thread is told to stop and joined.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.05
_ITEM, _DONE, _ERROR = "item", "done", "error"


def prefetched(source: Iterator[T], depth: int = 4, name: str = "prefetch") -> Iterator[T]:
    """Yield `source`'s items, produced by a daemon thread into a queue of `depth` items.

    Exceptions raised by `source` are re-raised in the consumer. `depth <= 0` iterates in the
    calling thread (handy for debugging).
    """
    if depth <= 0:
        yield from source
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(source, items, stop), name=name,
                              daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == _ITEM:
                yield value
            elif kind == _DONE:
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


def _produce(source: Iterator, items: queue.Queue, stop: threading.Event) -> None:
    try:
        for value in source:
            if not _put(items, (_ITEM, value), stop):
                return
        _put(items, (_DONE, None), stop)
    except Exception as err:  # handed to the consumer, which re-raises it
        _put(items, (_ERROR, err), stop)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _put(items: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    """Put `entry`, waiting for room; False if the consumer asked to stop meanwhile."""
    while not stop.is_set():
        try:
            items.put(entry, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
