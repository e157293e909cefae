from __future__ import annotations

import asyncio
import threading
import time

import pytest

from distrain.network import BackgroundLoop


@pytest.fixture
def loop():
    loop = BackgroundLoop()
    yield loop
    loop.shutdown()


def test_run_returns_result_and_raises_errors(loop):
    async def where():
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert loop.run(where(), timeout=5) == "distrain-network"

    async def fail():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        loop.run(fail(), timeout=5)


def test_timeout_cancels_the_coroutine(loop):
    cancelled = threading.Event()

    async def hang():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    start = time.monotonic()
    with pytest.raises(TimeoutError, match="within 0.2 s"):
        loop.run(hang(), timeout=0.2)
    assert time.monotonic() - start < 2
    assert cancelled.wait(2)


def test_shutdown_cancels_pending_tasks_and_is_idempotent():
    loop = BackgroundLoop()
    cancelled = threading.Event()

    async def background():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def spawn():
        asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(0)  # let the task start, so that it is cancelled mid-await

    loop.run(spawn(), timeout=5)
    loop.shutdown()
    assert cancelled.is_set()
    assert not loop.is_running
    loop.shutdown()

    async def nothing():
        pass

    with pytest.raises(RuntimeError, match="after shutdown"):
        loop.run(nothing())
