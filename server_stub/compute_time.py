"""Where the compute goes: busy seconds per kind of work, counted on the threads that do it.

The scheduler wraps each engine call in `measure(kind)`, on the compute thread or on the sampling
thread. Calls nest on a thread (training calls run in turns inside a sampling batch), so each
thread keeps a stack: a nested call pauses the one around it, and each of a thread's seconds is
charged to exactly one kind. The two threads can be busy at once (training beside a lean decode),
so the kinds' sum can exceed wall time. Readers on other threads take a `snapshot()`; the
difference of two snapshots is what the threads did in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

ComputeKind: TypeAlias = Literal["training", "sampling", "other"]
COMPUTE_KINDS: tuple[str, ...] = get_args(ComputeKind)


@dataclass
class _ThreadBlocks:
    """One thread's running blocks, innermost last, and when the innermost last started or resumed."""

    stack: list[ComputeKind] = field(default_factory=list)
    since: float = 0.0


class ComputeClock:
    """Busy seconds per kind of work (each `measure` block is timed on the thread that runs it)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seconds = dict.fromkeys(COMPUTE_KINDS, 0.0)
        self._threads: dict[int, _ThreadBlocks] = {}

    @contextmanager
    def measure(self, kind: ComputeKind) -> Iterator[None]:
        """Charge the block's time to `kind`, less the time of blocks nested inside it on its thread."""
        self._switch_to(kind)
        try:
            yield
        finally:
            self._switch_to(None)

    def _switch_to(self, kind: ComputeKind | None) -> None:
        now = self._clock()
        with self._lock:
            blocks = self._threads.setdefault(threading.get_ident(), _ThreadBlocks())
            if blocks.stack:
                self._seconds[blocks.stack[-1]] += now - blocks.since
            if kind is None:
                blocks.stack.pop()
            else:
                blocks.stack.append(kind)
            blocks.since = now

    def snapshot(self) -> dict[str, float]:
        """Busy seconds per kind so far (blocks still running count up to now)."""
        now = self._clock()
        with self._lock:
            seconds = dict(self._seconds)
            for blocks in self._threads.values():
                if blocks.stack:
                    seconds[blocks.stack[-1]] += now - blocks.since
        return seconds


def compute_difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What happened between two snapshots, per kind and in total (`compute`)."""
    spent = {kind: after.get(kind, 0.0) - before.get(kind, 0.0) for kind in COMPUTE_KINDS}
    return {**spent, "compute": sum(spent.values())}
