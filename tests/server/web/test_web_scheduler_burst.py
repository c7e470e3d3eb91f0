"""Scheduler: a burst of sample requests stays one batch while it keeps arriving (quiet-gap window).

The clock is fake, so "waiting" is decided by the times the test sets, never by how fast this
machine runs: the compute thread may look at the queue at any moment and must reach the same
decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from server_stub.scheduler import Scheduler

from .test_web_scheduler import Results, sample_job
from .web_fake_engine import BASE_MODEL, FakeEngine


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    engine = FakeEngine()
    yield engine
    engine.release()


def started(fake: FakeEngine, clock: FakeClock, **settings: Any) -> tuple[Scheduler, Results, str]:
    """A started scheduler on the fake clock, a collector of results, and a sampler of the fake engine."""
    scheduler = Scheduler(fake, clock=clock, **settings)
    scheduler.start()
    return scheduler, Results(), fake.create_sampler(BASE_MODEL, None).sampler_id


def poke(scheduler: Scheduler) -> None:
    """Make the compute thread look at its queues again (and wait until it has run this no-op)."""
    scheduler.call(lambda: None).result(timeout=30)


def test_a_burst_with_short_gaps_is_one_batch_however_long_it_lasts(fake: FakeEngine) -> None:
    clock = FakeClock()
    scheduler, results, sampler = started(fake, clock, sample_batch_window=1.0, sample_batch_max_wait=10.0)
    for i, at in enumerate([0.0, 0.9, 1.8, 2.7]):  # the oldest waits far past one window
        clock.now = at
        scheduler.submit_sample(sample_job(sampler, 1), results.finisher(f"s{i}"))
        poke(scheduler)
    assert list(scheduler.sample_batch_sizes) == []  # still arriving: nothing ran
    clock.now = 3.8  # a quiet gap longer than the window
    poke(scheduler)
    assert all(results.get(f"s{i}")[1] is None for i in range(4))
    assert list(scheduler.sample_batch_sizes) == [4]
    scheduler.stop()


def test_the_oldest_request_never_waits_past_the_cap(fake: FakeEngine) -> None:
    clock = FakeClock()
    scheduler, results, sampler = started(fake, clock, sample_batch_window=1.0, sample_batch_max_wait=2.0)
    for i, at in enumerate([0.0, 0.9, 1.8]):
        clock.now = at
        scheduler.submit_sample(sample_job(sampler, 1), results.finisher(f"s{i}"))
    clock.now = 2.1  # requests arrived 0.3 s ago, but the first has waited 2.1 s > the cap
    poke(scheduler)
    assert all(results.get(f"s{i}")[1] is None for i in range(3))
    clock.now = 2.2
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("late"))
    clock.now = 3.3
    poke(scheduler)
    assert results.get("late")[1] is None
    assert list(scheduler.sample_batch_sizes) == [3, 1]
    scheduler.stop()


def test_a_full_batch_does_not_wait(fake: FakeEngine) -> None:
    clock = FakeClock()
    scheduler, results, sampler = started(
        fake, clock, sample_batch_rows=4, sample_batch_window=1.0, sample_batch_max_wait=10.0
    )
    scheduler.submit_sample(sample_job(sampler, 2), results.finisher("a"))
    scheduler.submit_sample(sample_job(sampler, 2), results.finisher("b"))
    assert results.get("a")[1] is None and results.get("b")[1] is None  # the clock never moved
    assert list(scheduler.sample_batch_sizes) == [2]
    scheduler.stop()


def test_the_quiet_gap_grows_with_how_long_batches_take(fake: FakeEngine) -> None:
    clock = FakeClock()
    scheduler = Scheduler(
        fake,
        sample_batch_window=1.0,
        sample_batch_max_wait=100.0,
        sample_batch_wait_fraction=0.5,
        clock=clock,
    )
    engine_sample = fake.sample

    def slow_sample(jobs: list) -> list:
        clock.now += 10.0  # every batch "takes" 10 s, so the quiet gap becomes 5 s
        return engine_sample(jobs)

    fake.sample = slow_sample  # type: ignore[method-assign]
    scheduler.start()
    results = Results()
    sampler = fake.create_sampler(BASE_MODEL, None).sampler_id
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("first"))
    clock.now = 1.5
    poke(scheduler)
    assert results.get("first")[1] is None
    for key, at in (("a", 12.0), ("b", 15.0)):  # 3 s apart: more than the window, less than half a batch
        clock.now = at
        scheduler.submit_sample(sample_job(sampler, 1), results.finisher(key))
        poke(scheduler)
    assert list(scheduler.sample_batch_sizes) == [1]
    clock.now = 20.1
    poke(scheduler)
    assert results.get("a")[1] is None and results.get("b")[1] is None
    assert list(scheduler.sample_batch_sizes) == [1, 2]
    scheduler.stop()


def test_requests_that_came_during_a_batch_wait_for_its_clients_to_return(fake: FakeEngine) -> None:
    """Loops whose requests missed a batch rejoin the others after it instead of alternating with them."""
    clock = FakeClock()
    scheduler = Scheduler(fake, sample_batch_window=1.0, sample_batch_max_wait=10.0, clock=clock)
    results = Results()
    sampler = fake.create_sampler(BASE_MODEL, None).sampler_id
    engine_sample = fake.sample

    def long_sample(jobs: list) -> list:
        if "straggler" not in results.futures:  # the first batch: a straggler arrives halfway through it
            clock.now += 5.0
            scheduler.submit_sample(sample_job(sampler, 1), results.finisher("straggler"))
            clock.now += 5.0
        return engine_sample(jobs)

    fake.sample = long_sample  # type: ignore[method-assign]
    scheduler.start()
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("first"))
    clock.now = 1.5
    poke(scheduler)
    assert results.get("first")[1] is None
    poke(scheduler)  # the batch ended at 11.5: the straggler waits for the first loop to come back
    assert list(scheduler.sample_batch_sizes) == [1]
    clock.now = 12.0
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("returned"))
    clock.now = 13.1
    poke(scheduler)
    assert results.get("straggler")[1] is None and results.get("returned")[1] is None
    assert list(scheduler.sample_batch_sizes) == [1, 2]
    scheduler.stop()


def test_a_whole_burst_on_an_idle_server_starts_at_once(fake: FakeEngine) -> None:
    """An asample_batch is all its client asked for: no gap to wait after it, only after lone requests."""
    clock = FakeClock()
    scheduler, results, sampler = started(fake, clock, sample_batch_window=1.0, sample_batch_max_wait=10.0)
    burst = [(sample_job(sampler, 1), results.finisher(f"w{i}")) for i in range(3)]
    scheduler.submit_samples(burst, whole=True)
    poke(scheduler)  # the clock has not moved: only a whole burst may start now
    assert all(results.get(f"w{i}")[1] is None for i in range(3))
    assert list(scheduler.sample_batch_sizes) == [3]

    clock.now = 5.0  # a lone request, then a burst: the burst waits out the lone request's gap with it
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("lone"))
    clock.now = 5.5
    scheduler.submit_samples([(sample_job(sampler, 1), results.finisher("late"))], whole=True)
    poke(scheduler)
    assert list(scheduler.sample_batch_sizes) == [3]
    clock.now = 6.1
    poke(scheduler)
    assert results.get("lone")[1] is None and results.get("late")[1] is None
    assert list(scheduler.sample_batch_sizes) == [3, 2]
    scheduler.stop()
