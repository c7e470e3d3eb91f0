"""The client's background event loop, and the sync methods derived from the async ones.

Every client operation is written once, as a coroutine. Network I/O runs on one event loop in a
daemon thread of this process, so plain scripts, worker threads and the user's own event loops can
all call the clients without blocking each other; after a fork the child starts a loop of its own.
The sync surface is derived here: `sync_twin` runs the coroutine on that loop and waits for its
value, `future_twin` starts it there and returns an `APIFuture` at once. `on_client_loop` marks an
implementation's coroutine that must run on that loop (it uses the loop's connections), whichever
loop awaits it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from cookbook.client.futures import APIFuture, ConcurrentAPIFuture

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")


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
            raise RuntimeError(
                "a blocking client call was made from the client's own event loop "
                "thread; use the *_async method instead"
            )
        return self.submit(coro).result(timeout)

    def caller_blocks(self) -> None:
        """A thread is about to wait on a client future: run the `when_a_caller_blocks` hooks on the loop,
        after the first step of every call that thread has started (two hops: a call's task is created
        by one callback and takes its first step in the next)."""
        self._loop.call_soon_threadsafe(self._loop.call_soon, _run_blocking_hooks)

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
_blocking_hooks: list[Callable[[], None]] = []


def when_a_caller_blocks(hook: Callable[[], None]) -> None:
    """Run `hook` on the client's loop whenever a thread starts waiting on a future the loop has not
    finished: whatever that thread has asked for by then is all it asks for until its answer comes."""
    _blocking_hooks.append(hook)


def _run_blocking_hooks() -> None:
    for hook in _blocking_hooks:
        hook()


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


# -- the sync surface, derived from the coroutines ----------------------------------------------


def sync_twin(
    async_method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """`name` for `name_async`: runs the coroutine on the background loop and returns its value.

    For training calls that value is the operation's future: the coroutine only queues the work.
    """
    name = async_method.__name__

    def method(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        # Looked up by name so that a subclass's coroutine is the one that runs.
        return background_loop().run(getattr(self, name)(*args, **kwargs))

    return _named_after(method, async_method, returns_future=False)


def future_twin(
    async_method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], APIFuture[T]]:
    """`name` for `name_async`: starts the coroutine on the background loop, returns its future at once."""
    name = async_method.__name__

    def method(self: S, *args: P.args, **kwargs: P.kwargs) -> APIFuture[T]:
        loop = background_loop()
        return ConcurrentAPIFuture(loop.submit(getattr(self, name)(*args, **kwargs)), loop.caller_blocks)

    return _named_after(method, async_method, returns_future=True)


def _named_after(
    method: Callable[..., T],
    async_method: Callable[..., Any],
    returns_future: bool,
) -> Callable[..., T]:
    """Give the sync twin the coroutine's name, docs and parameters (for help() and introspection)."""
    # Not functools.update_wrapper: copying the whole __dict__ would copy __isabstractmethod__ too.
    method.__name__ = async_method.__name__.removesuffix("_async")
    method.__qualname__ = async_method.__qualname__.removesuffix("_async")
    method.__module__ = async_method.__module__
    method.__doc__ = async_method.__doc__
    signature = inspect.signature(async_method)
    if returns_future:
        signature = signature.replace(return_annotation=f"APIFuture[{signature.return_annotation}]")
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


def on_client_loop(async_method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """An implementation's coroutine that runs on the background loop, whichever loop awaits it."""

    @functools.wraps(async_method)
    async def hop(*args: P.args, **kwargs: P.kwargs) -> T:
        return await background_loop().run_async(async_method(*args, **kwargs))

    return hop
