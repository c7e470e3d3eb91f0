"""Sample requests made together go to the server together: a client's bursts.

An RL step asks for one sample per prompt, all at once. Sent one by one over the Tinker wire, each
request is two HTTP exchanges (asample, then retrieve_future), about 1 ms of this process's CPU and
2 ms of the server's, which spreads a burst of 64 over a few hundred milliseconds before the server's
batch can start; and the server, not knowing whether more are coming, waits for a quiet gap after the
last one. Here the requests of a burst are collected on the client's loop and handed on together: a
burst ends once no request has come for `BURST_QUIET_S` (the callers' threads hand requests to the
loop one at a time, and may pause for a GIL switch between them), or `BURST_MAX_S` after its first
request, or at once when a caller blocks on a client future (a thread that waits asks for nothing
more until its answer comes: a script that asks for its samples and then reads them skips the quiet
gap). How a burst travels is the client's (`http/sample_batches.py`, `in_process/sampling.py`);
each caller still gets its own response or its own error. Over HTTP a burst's responses come back
together, once its last request is done (a burst of more rows than one server batch holds waits for
its last batch); in process each comes as soon as its own is done.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable

from cookbook.client import types
from cookbook.client.loop import when_a_caller_blocks

BURST_QUIET_S = 0.002  # small beside the server's batching gap for lone requests (20 ms)
BURST_MAX_S = 0.02

Answer = asyncio.Future[types.SampleResponse]  # where a caller awaits its response
Waiting = list[tuple[types.SampleRequest, Answer]]
SendBurst = Callable[[Waiting], Awaitable[None]]  # sends a burst and settles every caller's future


class SampleBursts:
    """Collects the sample requests of one burst on the client's loop and hands them to `send` together."""

    def __init__(self, send: SendBurst):
        self._send_burst = send
        self._waiting: Waiting = []
        self._burst_start = 0.0
        self._burst = 0  # numbers the bursts: the quiet-gap timer of a burst sent early leaves the next alone
        self._sending: set[asyncio.Task[None]] = set()  # strong references until each send is done
        self._pid = os.getpid()

    async def sample(self, request: types.SampleRequest) -> types.SampleResponse:
        """The request's response, sent with whatever else is asked for in the same burst."""
        if self._pid != os.getpid():  # a forked child: its parent's queue belongs to another loop
            self._waiting, self._sending, self._pid = [], set(), os.getpid()
        loop = asyncio.get_running_loop()
        answer: Answer = loop.create_future()
        self._waiting.append((request, answer))
        if len(self._waiting) == 1:
            self._burst_start = loop.time()
            loop.call_later(BURST_QUIET_S, self._send_when_quiet, self._burst, 1)
        return await answer

    def _send_when_quiet(self, burst: int, waiting_then: int) -> None:
        """Send the burst, unless requests came since the last look (it only grows until sent)."""
        if burst != self._burst:
            return  # sent early, when a caller blocked
        loop = asyncio.get_running_loop()
        if len(self._waiting) != waiting_then and loop.time() - self._burst_start < BURST_MAX_S:
            loop.call_later(BURST_QUIET_S, self._send_when_quiet, burst, len(self._waiting))  # still coming
            return
        self.send_now()

    def send_now(self) -> None:
        """Send the requests collected so far, if any, without waiting for the burst to end."""
        if not self._waiting or self._pid != os.getpid():
            return
        self._burst += 1  # whatever comes next is a new burst, with its own timer
        waiting, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._send(waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, waiting: Waiting) -> None:
        try:
            await self._send_burst(waiting)
        except BaseException as exc:
            for _, answer in waiting:
                settle(answer, exception=exc)
            if not isinstance(exc, Exception):
                raise


def settle(
    answer: Answer,
    *,
    result: types.SampleResponse | None = None,
    exception: BaseException | None = None,
) -> None:
    """Resolve a caller's future, unless the caller has stopped waiting (cancelled)."""
    if answer.done():
        return
    if isinstance(exception, asyncio.CancelledError):
        answer.cancel()
    elif exception is not None:
        answer.set_exception(exception)
    elif result is not None:
        answer.set_result(result)


_bursts: weakref.WeakKeyDictionary[object, SampleBursts] = weakref.WeakKeyDictionary()


def _send_open_bursts() -> None:
    for bursts in list(_bursts.values()):
        bursts.send_now()


when_a_caller_blocks(_send_open_bursts)


def bursts_for(owner: object, send: SendBurst) -> SampleBursts:
    """The bursts of `owner` (a server connection, an in-process server), which all its sampling
    clients share; `send` is how they travel, fixed by the first call."""
    bursts = _bursts.get(owner)
    if bursts is None:
        bursts = _bursts[owner] = SampleBursts(send)
    return bursts
