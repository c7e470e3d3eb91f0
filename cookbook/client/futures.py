"""APIFuture: the handle every long client call returns.

`.result()` blocks, `await fut` (or `await fut.result_async()`) suspends. The concrete
future wraps a `concurrent.futures.Future` completed on the client's background event loop,
so it works from plain threads and from any asyncio loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


class APIFuture(ABC, Generic[T]):
    """A result that will exist later."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> T:
        """Block until the result is ready (raises what the operation raised)."""

    @abstractmethod
    async def result_async(self, timeout: float | None = None) -> T:
        """Await the result from any event loop."""

    @abstractmethod
    def done(self) -> bool:
        """True once the result (or error) is available."""

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    def map(self, fn: Callable[[T], U]) -> APIFuture[U]:
        """A future of `fn(result)`."""
        return MappedFuture(self, fn)


class ConcurrentAPIFuture(APIFuture[T]):
    """An APIFuture backed by a `concurrent.futures.Future`; `before_blocking` is called when `.result()`
    is about to wait for it (the client's loop learns that this caller asks for nothing more meanwhile)."""

    def __init__(
        self, future: concurrent.futures.Future[T], before_blocking: Callable[[], None] | None = None
    ):
        self._future = future
        self._before_blocking = before_blocking

    def future(self) -> concurrent.futures.Future[T]:
        return self._future

    def result(self, timeout: float | None = None) -> T:
        if self._before_blocking is not None and not self._future.done():
            self._before_blocking()
        return self._future.result(timeout)

    async def result_async(self, timeout: float | None = None) -> T:
        wrapped = asyncio.wrap_future(self._future)
        if timeout is None:
            return await wrapped
        return await asyncio.wait_for(wrapped, timeout)

    def done(self) -> bool:
        return self._future.done()


class ResolvedFuture(APIFuture[T]):
    """A future whose value is already known."""

    def __init__(self, value: T):
        self._value = value

    def result(self, timeout: float | None = None) -> T:
        return self._value

    async def result_async(self, timeout: float | None = None) -> T:
        return self._value

    def done(self) -> bool:
        return True


class MappedFuture(APIFuture[U]):
    """`fn` applied to another future's result, computed once."""

    _UNSET: Any = object()

    def __init__(self, inner: APIFuture[T], fn: Callable[[T], U]):
        self._inner = inner
        self._fn = fn
        self._value: Any = self._UNSET

    def result(self, timeout: float | None = None) -> U:
        if self._value is self._UNSET:
            self._value = self._fn(self._inner.result(timeout))
        return self._value

    async def result_async(self, timeout: float | None = None) -> U:
        if self._value is self._UNSET:
            self._value = self._fn(await self._inner.result_async(timeout))
        return self._value

    def done(self) -> bool:
        return self._inner.done()
