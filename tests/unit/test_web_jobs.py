"""The model job queue: one job at a time, bounded, refuses instead of waiting."""

import asyncio
import threading

import pytest

from monosemantic.web.jobs import JobQueue, QueueFull


def test_bound_order_and_release():
    async def scenario():
        q = JobQueue(max_pending=2)
        gate = threading.Event()
        running: list[int] = []
        order: list[int] = []

        def job(i):
            def fn():
                running.append(i)
                assert len(running) == 1  # never two jobs at once
                gate.wait(5)
                order.append(i)
                running.remove(i)
                return i * 10
            return fn

        first = asyncio.ensure_future(q.run(job(1)))
        second = asyncio.ensure_future(q.run(job(2)))
        await asyncio.sleep(0.05)
        assert q.pending == 2
        with pytest.raises(QueueFull, match="busy"):
            await q.run(job(3))
        gate.set()
        assert await first == 10 and await second == 20
        assert order == [1, 2] and q.pending == 0

        def boom():
            raise ValueError("bad job")

        with pytest.raises(ValueError, match="bad job"):
            await q.run(boom)
        assert q.pending == 0  # a failed job frees its slot
        assert await q.run(lambda: 7) == 7
        q.shutdown()

    _run_in_fresh_loop(scenario())


def _run_in_fresh_loop(coro):
    """asyncio.run in its own thread: another test's tool (Playwright's sync API) may keep a
    loop running in the main thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result(30)


def test_needs_a_slot():
    with pytest.raises(ValueError):
        JobQueue(0)
