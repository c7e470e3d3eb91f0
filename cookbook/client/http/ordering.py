"""Turn-taking that makes a training client's submissions leave in seq_id order.

Calls take their seq_id in the caller's thread, but their coroutines may be scheduled in any
order and their bodies may take different times to send. Each coroutine waits for its turn,
sends, then hands the turn on, so the server sees seq 1, 2, 3, ... arrive in order.
"""

from __future__ import annotations

import asyncio


class SequenceGate:
    """Lets coroutines through one at a time, in increasing sequence numbers (loop-thread only)."""

    def __init__(self, first: int = 1):
        self._current = first
        self._waiters: dict[int, asyncio.Future[None]] = {}

    @property
    def current(self) -> int:
        """The sequence number whose turn it is."""
        return self._current

    async def wait_turn(self, seq: int) -> None:
        if seq < self._current:
            raise RuntimeError(f"sequence number {seq} already had its turn (now {self._current})")
        if seq == self._current:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[seq] = waiter
        await waiter

    def advance(self, seq: int) -> None:
        """`seq` is done with its turn: wake the next one."""
        if seq != self._current:
            raise RuntimeError(f"sequence number {seq} finished out of turn (expected {self._current})")
        self._current += 1
        waiter = self._waiters.pop(self._current, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
