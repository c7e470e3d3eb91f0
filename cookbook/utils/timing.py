"""Wall-clock timings as `time/<name>` metrics, the names every loop logs (`time/total`, ...)."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

TIME_PREFIX = "time/"
TOTAL_KEY = f"{TIME_PREFIX}total"


@contextmanager
def timed(name: str, metrics: MutableMapping[str, float]) -> Iterator[None]:
    """Add the seconds spent in the block to `metrics["time/<name>"]`.

    Repeated blocks of one name in the same step add up; the time is recorded even when the
    block raises, so a failing step still shows where its time went.
    """
    if not name or name.startswith(TIME_PREFIX):
        raise ValueError(f"timed() takes a bare name such as 'step' (it adds {TIME_PREFIX!r}), got {name!r}")
    key = TIME_PREFIX + name
    start = time.perf_counter()
    try:
        yield
    finally:
        metrics[key] = metrics.get(key, 0.0) + (time.perf_counter() - start)


class StepClock:
    """Measures one step from its creation; `record_total(metrics)` writes `time/total`.

    A step's work may span several loop iterations when requests are pipelined, so the clock is
    an object handed along with the step rather than a block around it.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.perf_counter() - self.start

    def record_total(self, metrics: MutableMapping[str, float]) -> float:
        """Set `metrics["time/total"]` to the seconds since the step started, and return it."""
        metrics[TOTAL_KEY] = self.elapsed()
        return metrics[TOTAL_KEY]


@contextmanager
def timed_total(metrics: MutableMapping[str, float]) -> Iterator[StepClock]:
    """`with timed_total(metrics):` around a whole step sets `time/total` when the block ends."""
    clock = StepClock()
    try:
        yield clock
    finally:
        clock.record_total(metrics)
