"""The one background event loop every HTTP client of a process shares.

All network I/O runs on this loop, in its own daemon thread, so sync callers (plain scripts,
worker threads) and async callers (any event loop of the user's) can both start requests and
get futures back without blocking each other. One loop per process keeps the httpx connection
pools in one place; after a fork the child starts a fresh loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cookbook-client-loop", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; usable from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and block until it finishes (never from the loop itself)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("a blocking client call was made from the client's own event loop "
                               "thread; use the *_async method instead")
        return self.submit(coro).result(timeout)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the background loop from whatever loop the caller runs on."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))


_lock = threading.Lock()
_instance: BackgroundLoop | None = None


def background_loop() -> BackgroundLoop:
    """The process's shared loop, started on first use."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = BackgroundLoop()
        return _instance


def _forget_loop_in_child() -> None:
    """A forked child has no loop thread: it must start its own (and a lock nobody holds)."""
    global _instance, _lock
    _instance = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_loop_in_child)
