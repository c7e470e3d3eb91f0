"""Where the compute thread's time goes: busy seconds per kind of work, counted on that thread.

The scheduler wraps each engine call in `measure(kind)`. Calls nest (training calls run in turns
inside a sampling batch), so the clock keeps a stack: a nested call pauses the one around it, and
every second is charged to exactly one kind. Readers on other threads take a `snapshot()`; the
difference of two snapshots is what the compute thread did in between, and wall time minus it is
the time the thread stood idle waiting for work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeAlias, get_args

ComputeKind: TypeAlias = Literal["training", "sampling", "other"]
COMPUTE_KINDS: tuple[str, ...] = get_args(ComputeKind)


class ComputeClock:
    """Busy seconds per kind of work on one thread (its `measure` blocks run only on that thread)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seconds = dict.fromkeys(COMPUTE_KINDS, 0.0)
        self._stack: list[ComputeKind] = []
        self._since = clock()  # when the innermost running block last started or resumed

    @contextmanager
    def measure(self, kind: ComputeKind) -> Iterator[None]:
        """Charge the block's time to `kind`, less the time of blocks nested inside it."""
        self._switch_to(kind)
        try:
            yield
        finally:
            self._switch_to(None)

    def _switch_to(self, kind: ComputeKind | None) -> None:
        now = self._clock()
        with self._lock:
            if self._stack:
                self._seconds[self._stack[-1]] += now - self._since
            if kind is None:
                self._stack.pop()
            else:
                self._stack.append(kind)
            self._since = now

    def snapshot(self) -> dict[str, float]:
        """Busy seconds per kind so far (a block still running counts up to now)."""
        now = self._clock()
        with self._lock:
            seconds = dict(self._seconds)
            if self._stack:
                seconds[self._stack[-1]] += now - self._since
        return seconds


def compute_difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What happened between two snapshots, per kind and in total (`compute`)."""
    spent = {kind: after.get(kind, 0.0) - before.get(kind, 0.0) for kind in COMPUTE_KINDS}
    return {**spent, "compute": sum(spent.values())}
