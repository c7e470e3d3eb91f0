"""Scheduler on its own: lane fairness, batching caps and window, failures, queue bounds."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cookbook.client import types
from server_stub.engine import ConflictError, SampleJob, UserError
from server_stub.errors import QueueFullError
from server_stub.scheduler import Scheduler, Task

from .web_fake_engine import BASE_MODEL, FakeEngine


class Results:
    """Collects (result, exception) pairs delivered by the compute thread, by key."""

    def __init__(self) -> None:
        self.futures: dict[str, concurrent.futures.Future[Any]] = {}

    def finisher(self, key: str) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.futures[key] = future
        return lambda result, exc: future.set_result((result, exc))

    def get(self, key: str) -> tuple[Any, BaseException | None]:
        return self.futures[key].result(timeout=30)


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    engine = FakeEngine()
    yield engine
    engine.release()


def make_scheduler(engine: FakeEngine, **settings: Any) -> Scheduler:
    scheduler = Scheduler(engine, **settings)
    scheduler.start()
    return scheduler


def fb_task(engine: FakeEngine, model: str, first_token: int, results: Results, key: str) -> Task:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([first_token]),
        loss_fn_inputs={"target_tokens": [1], "weights": [1.0]},
    )
    fwd = types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy")
    return Task(lambda: engine.forward_backward(model, fwd, True), results.finisher(key))


def create(scheduler: Scheduler, engine: FakeEngine, model: str, results: Results) -> None:
    scheduler.open_model(
        model,
        BASE_MODEL,
        Task(lambda: engine.create_model(model, BASE_MODEL, None, None), results.finisher(f"create-{model}")),
    )
    assert results.get(f"create-{model}")[1] is None


def sample_job(sampler: str, rows: int, first: int = 1) -> SampleJob:
    request = types.SampleRequest(
        num_samples=rows,
        prompt=types.ModelInput.from_ints([first]),
        sampling_params=types.SamplingParams(max_tokens=1),
    )
    return SampleJob(sampler, request)


def test_training_lanes_take_turns(fake: FakeEngine) -> None:
    scheduler = make_scheduler(fake)
    results = Results()
    for model in ("a", "b"):
        create(scheduler, fake, model, results)
    fake.hold()
    scheduler.submit(Task(lambda: fake.create_sampler(BASE_MODEL, None), results.finisher("blocker")))
    fake.wait_for_calls(3)
    for seq in (1, 2, 3):
        for model in ("a", "b"):
            scheduler.submit_ordered(
                model, seq, b"", f"{model}{seq}", fb_task(fake, model, seq, results, f"{model}{seq}")
            )
    fake.release()
    for key in ("a3", "b3"):
        results.get(key)
    assert [(c[1], c[2]) for c in fake.calls[3:]] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("b", 2),
        ("a", 3),
        ("b", 3),
    ]
    scheduler.stop()


def test_seq_bookkeeping(fake: FakeEngine) -> None:
    scheduler = make_scheduler(fake, max_seq_ahead=10)
    results = Results()
    create(scheduler, fake, "m", results)
    refusal = UserError("bad", field="x")
    scheduler.reject_ordered("m", 1, b"d1", refusal)
    with pytest.raises(UserError) as stored:
        scheduler.find_ordered("m", 1, b"d1")
    assert stored.value is refusal
    with pytest.raises(ConflictError):
        scheduler.find_ordered("m", 1, b"other")
    with pytest.raises(UserError, match="more than 10 ahead"):
        scheduler.find_ordered("m", 50, b"d")
    scheduler.submit_ordered("m", 2, b"d2", "req-2", fb_task(fake, "m", 2, results, "2"))
    assert scheduler.find_ordered("m", 2, b"d2") == "req-2"
    assert results.get("2")[1] is None  # ran although seq 1 never ran
    assert scheduler.find_ordered("m", 3, b"d3") is None
    scheduler.stop()


def test_sample_batches_respect_the_row_cap(fake: FakeEngine) -> None:
    scheduler = make_scheduler(fake, sample_batch_rows=4)
    results = Results()
    sampler = fake.create_sampler(BASE_MODEL, None).sampler_id
    fake.hold()
    scheduler.submit(Task(lambda: fake.create_sampler(BASE_MODEL, None), results.finisher("blocker")))
    fake.wait_for_calls(2)
    for i, rows in enumerate([3, 2, 1, 6, 1]):
        scheduler.submit_sample(sample_job(sampler, rows), results.finisher(f"s{i}"))
    fake.release()
    outputs = [results.get(f"s{i}") for i in range(5)]
    assert [len(r.sequences) for r, _ in outputs] == [3, 2, 1, 6, 1]
    # FIFO, at most 4 rows per batch unless one request alone is bigger
    assert list(scheduler.sample_batch_sizes) == [1, 2, 1, 1]
    scheduler.stop()


def test_a_small_batch_waits_for_company_until_full(fake: FakeEngine) -> None:
    scheduler = make_scheduler(fake, sample_batch_rows=3, sample_batch_window=60.0)
    results = Results()
    sampler = fake.create_sampler(BASE_MODEL, None).sampler_id
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("first"))
    time.sleep(0.2)
    assert not results.futures["first"].done()  # held back: the batch is not full, the window is long
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("second"))
    scheduler.submit_sample(sample_job(sampler, 1), results.finisher("third"))
    assert all(results.get(k)[1] is None for k in ("first", "second", "third"))
    assert list(scheduler.sample_batch_sizes) == [3]
    scheduler.stop()


def test_sampling_failures_and_queue_bound(fake: FakeEngine) -> None:
    scheduler = make_scheduler(fake, max_pending_samples=3)
    results = Results()
    fake.hold()
    scheduler.submit(Task(lambda: fake.create_sampler(BASE_MODEL, None), results.finisher("blocker")))
    fake.wait_for_calls(1)
    job = sample_job("sampler-missing", 1)
    scheduler.submit_sample(job, results.finisher("a"))
    with pytest.raises(QueueFullError, match="no room for 3 more"):  # several go in whole or not at all
        scheduler.submit_samples([(job, results.finisher(key)) for key in ("x", "y", "z")])
    scheduler.submit_samples([(job, results.finisher("b")), (job, results.finisher("c"))])
    with pytest.raises(QueueFullError):
        scheduler.submit_sample(job, results.finisher("d"))
    fake.release()
    for key in ("a", "b", "c"):  # engine.sample raised for the whole batch: every job fails with it
        result, exc = results.get(key)
        assert result is None and isinstance(exc, KeyError)
    assert not any(results.futures[key].done() for key in ("x", "y", "z", "d"))
    scheduler.stop()


def test_call_returns_results_and_exceptions_and_the_thread_survives(fake: FakeEngine) -> None:
    scheduler = make_scheduler(fake)

    def explode() -> None:
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="nope"):
        scheduler.call(explode).result(timeout=30)
    assert scheduler.call(lambda: 41 + 1).result(timeout=30) == 42
    scheduler.stop()
