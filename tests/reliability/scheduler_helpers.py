"""Helpers shared by the scheduler's reliability tests (a plain module: conftest is for fixtures)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from server_stub.scheduler import Scheduler, Task
from tests.server.web.web_fake_engine import BASE_MODEL, FakeEngine


def finished() -> tuple[threading.Event, Any]:
    """An event, and a finisher that sets it."""
    done = threading.Event()
    return done, lambda result, exc: done.set()


@contextmanager
def scheduler_with_model(engine: FakeEngine, clock: Callable[[], float] | None = None) -> Iterator[Scheduler]:
    """A started scheduler on `engine` with model "run-a" created; stopped on the way out."""
    scheduler = Scheduler(engine) if clock is None else Scheduler(engine, clock=clock)
    scheduler.start()
    try:
        created, finish = finished()
        scheduler.open_model(
            "run-a", BASE_MODEL, Task(lambda: engine.create_model("run-a", BASE_MODEL, None, None), finish)
        )
        assert created.wait(30)
        yield scheduler
    finally:
        scheduler.stop()
