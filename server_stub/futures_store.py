"""Results of accepted requests, held for retrieve_future's long-poll.

Every long operation gets a request id at once and an entry here. The compute thread resolves the
entry (from its own thread, through the event loop), and `retrieve_future` waits on it for up to
the long-poll time. Results are serialized once, on the compute thread, in their natural format
(see result_formats.py), so polling is cheap; a client that asks for the other format gets it
encoded once, on first request. Memory is bounded: a fetched result is kept for a grace period
(a client whose connection dropped may poll again), an unfetched one until a TTL, and both give
way to count/byte caps.
All state is touched only on the event loop thread; the only cross-thread entry point is the
callable `finisher()` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cookbook.client import types
from server_stub import result_formats
from server_stub.engine import UserError

logger = logging.getLogger("server_stub.futures")

Finisher = Callable[[Any, BaseException | None], None]
LOW_WATER = 0.9  # a store over a cap sheds results down to this fraction of it


@dataclass(frozen=True)
class Succeeded:
    """The typed response, already serialized (in `media_type`); other formats are made on request."""

    body: bytes
    media_type: str = result_formats.JSON
    result: types.WireModel | None = field(default=None, compare=False)
    others: dict[str, bytes] = field(default_factory=dict, compare=False)  # media type -> body

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(body) for body in self.others.values())

    def encoded(self, media_type: str) -> bytes | None:
        """The body in `media_type`, if it has been made."""
        return self.body if media_type == self.media_type else self.others.get(media_type)


@dataclass(frozen=True)
class Failed:
    """What retrieve_future answers as RequestFailedResponse."""

    error: str
    category: types.RequestErrorCategory

    def body(self) -> bytes:
        return (
            types.RequestFailedResponse(error=self.error, category=self.category).model_dump_json().encode()
        )


Outcome = Succeeded | Failed


def outcome_of(result: Any, exc: BaseException | None) -> Outcome:
    """Turn an engine call's return value or exception into what the client will read."""
    if exc is None:
        if not isinstance(result, types.WireModel):
            return Failed(
                f"engine returned {type(result).__name__}, not a response", types.RequestErrorCategory.Server
            )
        media_type = result_formats.natural_format(result)
        try:
            body = result_formats.encode(result, media_type)
        except Exception as exc:
            return outcome_of(None, exc)
        return Succeeded(body, media_type, result)
    return failure_of(exc)


def failure_of(exc: BaseException) -> Failed:
    """A failed engine call as the client reads it: the caller's mistake (user) or the server's."""
    if isinstance(exc, UserError):
        message = exc.message
        if exc.field and not message.startswith(exc.field):
            message = f"{exc.field}: {message}"
        return Failed(message, types.RequestErrorCategory.User)
    logger.error("request failed with a server error", exc_info=(type(exc), exc, exc.__traceback__))
    return Failed(f"{type(exc).__name__}: {exc}", types.RequestErrorCategory.Server)


@dataclass
class _Entry:
    request_id: str
    model_id: str | None
    created: float
    done: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: Outcome | None = None
    completed: float | None = None
    fetched: float | None = None

    @property
    def size(self) -> int:
        if isinstance(self.outcome, Succeeded):
            return self.outcome.size
        return 256 if self.outcome is not None else 0


class UnknownRequestError(KeyError):
    """No such request id (never issued, or its result has been dropped)."""

    def __init__(self, request_id: str, expired: bool):
        super().__init__(request_id)
        self.request_id = request_id
        self.expired = expired

    def __str__(self) -> str:
        if self.expired:
            return (
                f"the result of request {self.request_id!r} is no longer kept "
                "(fetched long ago or never fetched in time)"
            )
        return (
            f"unknown request id {self.request_id!r}: this server process never issued it "
            "(results live in memory, so a restart loses them)"
        )


class FuturesStore:
    """Pending and finished requests by id, with long-poll waits and bounded memory."""

    def __init__(
        self,
        *,
        grace_seconds: float,
        ttl_seconds: float,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 1.0,
    ) -> None:
        self._grace = grace_seconds
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._entries: dict[str, _Entry] = {}
        self._finished: OrderedDict[str, _Entry] = OrderedDict()  # completion order
        self._finished_bytes = 0
        self._forgotten: OrderedDict[str, None] = OrderedDict()  # recently dropped ids, for messages
        self._last_sweep = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that owns this store; finishers post their results to it."""
        self._loop = loop

    # -- event loop side ---------------------------------------------------------------------

    def open(self, model_id: str | None = None) -> str:
        """A new pending request; its id is what the client polls."""
        self._maybe_sweep()
        request_id = f"req-{uuid.uuid4().hex}"
        self._entries[request_id] = _Entry(request_id, model_id, self._clock())
        return request_id

    def discard(self, request_id: str) -> None:
        """Forget a request that was never queued (its submission failed)."""
        entry = self._entries.get(request_id)
        if entry is not None and entry.outcome is None:
            del self._entries[request_id]

    def finisher(self, request_id: str) -> Finisher:
        """A thread-safe callable that resolves `request_id` from (result, exception)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("FuturesStore.attach(loop) must be called before requests are accepted")

        def finish(result: Any, exc: BaseException | None) -> None:
            outcome = outcome_of(result, exc)  # serialize here, off the event loop
            if not loop.is_closed():  # after shutdown nobody is left to read it
                loop.call_soon_threadsafe(self.complete, request_id, outcome)

        return finish

    def complete(self, request_id: str, outcome: Outcome) -> None:
        """Record the outcome (event loop thread) and wake long-pollers."""
        entry = self._entries.get(request_id)
        if entry is None or entry.outcome is not None:
            return
        entry.outcome = outcome
        entry.completed = self._clock()
        self._finished[request_id] = entry
        self._finished_bytes += entry.size
        entry.done.set()
        self._maybe_sweep(force=self._over_caps())

    async def wait(self, request_id: str, timeout: float) -> Outcome | None:
        """The outcome, waiting up to `timeout` seconds; None if still pending then."""
        entry = self._entries.get(request_id)
        if entry is None:
            raise UnknownRequestError(request_id, expired=request_id in self._forgotten)
        if entry.outcome is None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry.done.wait(), timeout)
        if entry.outcome is None:
            return None
        if entry.fetched is None:
            entry.fetched = self._clock()
        return entry.outcome

    async def body(self, request_id: str, outcome: Succeeded, media_type: str) -> bytes:
        """`outcome` (of `request_id`) in `media_type`, encoded off the event loop when first asked for."""
        body = outcome.encoded(media_type)
        if body is not None:
            return body
        if outcome.result is None:
            raise ValueError(f"this result is kept as {outcome.media_type} only")
        body = await asyncio.to_thread(result_formats.encode, outcome.result, media_type)
        if outcome.encoded(media_type) is None:
            outcome.others[media_type] = body
            entry = self._finished.get(request_id)
            if entry is not None and entry.outcome is outcome:  # still counted against the byte cap
                self._finished_bytes += len(body)
        return body

    def pending_count(self) -> int:
        return len(self._entries) - len(self._finished)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    # -- bounds ------------------------------------------------------------------------------

    def _over_caps(self, fraction: float = 1.0) -> bool:
        return (
            len(self._finished) > self._max_entries * fraction
            or self._finished_bytes > self._max_bytes * fraction
        )

    def _maybe_sweep(self, force: bool = False) -> None:
        now = self._clock()
        if force or now - self._last_sweep >= self._sweep_interval:
            self._last_sweep = now
            self.sweep()

    def sweep(self) -> None:
        """Drop expired results; over a cap, drop down to LOW_WATER of it, fetched results first.

        Dropping only to just under a cap would make every later completion sweep the whole store
        again; with the headroom, a forced sweep comes once per tenth of the cap.
        """
        now = self._clock()
        for request_id, entry in list(self._finished.items()):
            assert entry.completed is not None
            expired_fetch = entry.fetched is not None and now - entry.fetched >= self._grace
            if expired_fetch or now - entry.completed >= self._ttl:
                self._drop(request_id)
        if not self._over_caps():
            return
        for request_id in [rid for rid, e in self._finished.items() if e.fetched is not None]:
            if not self._over_caps(LOW_WATER):
                break
            self._drop(request_id)
        while self._over_caps(LOW_WATER):
            self._drop(next(iter(self._finished)))

    def _drop(self, request_id: str) -> None:
        entry = self._finished.pop(request_id)
        self._finished_bytes -= entry.size
        del self._entries[request_id]
        self._forgotten[request_id] = None
        while len(self._forgotten) > max(self._max_entries, 1024):
            self._forgotten.popitem(last=False)
