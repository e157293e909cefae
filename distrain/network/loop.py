"""An asyncio event loop running in a daemon thread, driven from synchronous code.

The training and validation code is synchronous (a training step is a blocking call into torch),
while hivemind's DHT and P2P layers are asyncio. Rather than make the whole program async, every
coroutine runs on one background loop and the caller blocks on its result with a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """An event loop in a daemon thread; ``run(coro)`` executes a coroutine there and returns its result.

    The loop starts in the constructor. A daemon thread never keeps the interpreter alive, but callers
    should still ``shutdown()`` so that pending tasks (DHT refreshes, open streams) are cancelled cleanly.

    Example::

        loop = BackgroundLoop(name="dht")
        node = loop.run(DHTNode.create(), timeout=10)
        loop.run(node.shutdown(), timeout=10)
        loop.shutdown()
    """

    def __init__(self, name: str = "distrain-network"):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the background loop and block until it finishes.

        :param timeout: seconds to wait; ``None`` waits forever. On expiry the coroutine is cancelled
          and ``TimeoutError`` is raised, so a hung peer never wedges the caller.
        :raises RuntimeError: if called from the loop's own thread (which would deadlock) or after shutdown.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run() called from its own thread; await the coroutine instead")
        if not self.is_running:
            coro.close()
            raise RuntimeError("BackgroundLoop.run() called after shutdown()")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # an alias of the builtin TimeoutError only from Python 3.11
            if future.done():  # the coroutine itself raised TimeoutError: pass it on unchanged
                raise
            future.cancel()
            raise TimeoutError(f"operation did not finish within {timeout:g} s") from None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every task still pending on the loop, stop it and join its thread. Idempotent."""
        if not self.is_running:
            return
        try:
            self.run(self._cancel_pending(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()

    @staticmethod
    async def _cancel_pending() -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        # return_exceptions: the tasks' CancelledErrors (and any errors they raise while unwinding) are expected.
        await asyncio.gather(*pending, return_exceptions=True)
