"""The compute and sampling threads' busy time per kind of work: counted by the scheduler, read over HTTP."""

from __future__ import annotations

import itertools
import threading

from fastapi.testclient import TestClient

from cookbook.client import types
from server_stub.compute_time import COMPUTE_KINDS, ComputeClock, compute_difference
from server_stub.scheduler import Scheduler

from .test_web_scheduler import Results, create, sample_job
from .web_fake_engine import BASE_MODEL, FakeEngine
from .web_wire import API


def ticking_clock() -> ComputeClock:
    """A compute clock whose every reading is one second later than the one before."""
    ticks = itertools.count()
    lock = threading.Lock()

    def now() -> float:
        with lock:
            return float(next(ticks))

    return ComputeClock(now)


def test_nested_blocks_pause_the_block_around_them() -> None:
    clock = ticking_clock()
    with clock.measure("sampling"):  # reads 1
        with clock.measure("training"):  # reads 2: sampling had 1 s
            pass  # reads 3 on leaving: training had 1 s
        with clock.measure("training"):  # 4: sampling 1 s more; 5: training 1 s more
            pass
    # leaving sampling reads 6: 1 s more
    assert clock.snapshot() == {"training": 2.0, "sampling": 3.0, "other": 0.0}


def test_blocks_on_two_threads_both_count() -> None:
    """Training beside a decode: each thread's block is charged in full, though they overlap."""
    clock = ticking_clock()
    inside, done = threading.Event(), threading.Event()

    def decode() -> None:
        with clock.measure("sampling"):  # reads 1
            inside.set()
            assert done.wait(30)
        # leaving reads 4: sampling had 3 s

    thread = threading.Thread(target=decode)
    thread.start()
    assert inside.wait(30)
    with clock.measure("training"):  # reads 2: nothing paused on the other thread
        pass  # reads 3: training had 1 s
    done.set()
    thread.join(30)
    assert clock.snapshot() == {"training": 1.0, "sampling": 3.0, "other": 0.0}


def test_a_running_block_counts_up_to_the_snapshot() -> None:
    clock = ticking_clock()
    with clock.measure("other"):  # reads 1
        assert clock.snapshot()["other"] == 1.0  # reads 2
    assert compute_difference({"training": 1.0}, {"training": 3.0, "other": 2.0}) == {
        "training": 2.0,
        "sampling": 0.0,
        "other": 2.0,
        "compute": 4.0,
    }


def test_the_scheduler_charges_each_kind_of_work() -> None:
    engine = FakeEngine()
    scheduler = Scheduler(engine)
    scheduler.compute_time = ticking_clock()
    scheduler.start()
    try:
        results = Results()
        create(scheduler, engine, "m", results)  # a training lane's call
        sampler = scheduler.call(lambda: engine.create_sampler(BASE_MODEL, None)).result(timeout=30)
        scheduler.submit_sample(sample_job(sampler.sampler_id, 1), results.finisher("sample"))
        assert results.get("sample")[1] is None
        spent = scheduler.compute_time.snapshot()
    finally:
        scheduler.stop()
        engine.release()
    assert spent == {"training": 1.0, "sampling": 1.0, "other": 1.0}


def test_the_route_reads_the_compute_threads_time(client: TestClient) -> None:
    answer = client.get(f"{API}/compute_time")
    assert answer.status_code == 200
    seconds = types.ComputeTimeResponse.model_validate(answer.json()).seconds
    assert set(seconds) == set(COMPUTE_KINDS) and all(v >= 0 for v in seconds.values())
    capabilities = client.get(f"{API}/get_server_capabilities").json()
    assert types.EXTENSION_COMPUTE_TIME in capabilities["extensions"]
