"""A long sampling batch lets training calls run between its decode steps, within its credit; training
is charged only for compute that sampling wanted."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cookbook.client import types
from server_stub.compute_turns import offer_turn
from server_stub.engine import SampleJob
from server_stub.scheduler import TRAINING_SHARE, TURN_CREDIT_CAP, Scheduler, Task
from tests.reliability.scheduler_helpers import finished, scheduler_with_model
from tests.server.web.web_fake_engine import FakeEngine

STEPS = 200


class SlowSampler(FakeEngine):
    """sample() decodes STEPS steps of 5 ms, offering a turn after each; the log says what ran when."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.sampling = threading.Event()
        self.submitted = threading.Event()  # the test's training call is queued

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        self.sampling.set()
        self.submitted.wait(30)
        for step in range(STEPS):
            time.sleep(0.005)
            self.log.append(f"decode {step}")
            offer_turn()
        return [types.SampleResponse(sequences=[]) for _ in jobs]

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        self.log.append("train")
        return types.OptimStepResponse(metrics={})


def test_a_training_call_runs_between_decode_steps_of_a_long_batch() -> None:
    engine = SlowSampler()
    with scheduler_with_model(engine) as scheduler:
        request = types.SampleRequest(
            prompt=types.ModelInput.from_ints([1, 2]), sampling_params=types.SamplingParams(max_tokens=2)
        )
        sampled, finish_sample = finished()
        scheduler.submit_sample(SampleJob("sampler", request), finish_sample)
        assert engine.sampling.wait(30)
        trained, finish_train = finished()
        adam = types.AdamParams(learning_rate=0.1)
        scheduler.submit_ordered(
            "run-a", 1, b"d", "req", Task(lambda: engine.optim_step("run-a", adam), finish_train)
        )
        engine.submitted.set()
        assert trained.wait(30) and sampled.wait(30)
    position = engine.log.index("train")
    assert 0 < position < STEPS, "the training call waited for the whole generation"


class ClockedEngine(FakeEngine):
    """Time is a fake clock: an optim_step takes `train_seconds` and a decode step 0.1 s; the log says
    what ran when."""

    def __init__(self, train_seconds: float = 1.0) -> None:
        super().__init__()
        self.train_seconds = train_seconds
        self.now = 0.0
        self.log: list[str] = []
        self.sampling = threading.Event()
        self.submitted = threading.Event()

    def clock(self) -> float:
        return self.now

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        self.sampling.set()
        self.submitted.wait(30)
        for step in range(10):
            self.now += 0.1
            self.log.append(f"decode {step}")
            offer_turn()
        return [types.SampleResponse(sequences=[]) for _ in jobs]

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        self.now += self.train_seconds
        self.log.append("train")
        return types.OptimStepResponse(metrics={})


ADAM = types.AdamParams(learning_rate=0.1)
REQUEST = types.SampleRequest(
    prompt=types.ModelInput.from_ints([1, 2]), sampling_params=types.SamplingParams(max_tokens=2)
)


@contextmanager
def clocked_scheduler(train_seconds: float = 1.0) -> Iterator[tuple[ClockedEngine, Scheduler]]:
    """A started scheduler on a `ClockedEngine`, model "run-a" open; stopped on the way out."""
    engine = ClockedEngine(train_seconds=train_seconds)
    with scheduler_with_model(engine, engine.clock) as scheduler:
        yield engine, scheduler


@pytest.mark.parametrize("sampling_waited", [False, True])
def test_training_pays_for_compute_only_when_sampling_wanted_it(sampling_waited: bool) -> None:
    """A long training call while no sample request waits costs training none of its later turns;
    the same call while a batch was ready to start makes training wait within the next batch."""
    with clocked_scheduler() as (engine, scheduler):
        holding, gate = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            gate.wait(30)

        scheduler.submit(Task(hold, lambda result, exc: None))  # the compute thread waits while we queue
        assert holding.wait(30)
        first, finish_first = finished()
        scheduler.submit_ordered(
            "run-a", 1, b"1", "r1", Task(lambda: engine.optim_step("run-a", ADAM), finish_first)
        )
        sampled, finish_sample = finished()
        if sampling_waited:
            scheduler.submit_sample(SampleJob("sampler", REQUEST), finish_sample)
        gate.set()  # training's turn comes first: it runs 1 s, beside a ready batch or none
        assert first.wait(30)
        if not sampling_waited:
            scheduler.submit_sample(SampleJob("sampler", REQUEST), finish_sample)
        assert engine.sampling.wait(30)
        second, finish_second = finished()
        scheduler.submit_ordered(
            "run-a", 2, b"2", "r2", Task(lambda: engine.optim_step("run-a", ADAM), finish_second)
        )
        engine.submitted.set()
        assert second.wait(30) and sampled.wait(30)
    turn = engine.log.index("train", 1)
    # Charged, training owes the credit's cap and waits for enough 0.1 s decode steps to repay it.
    owed_steps = math.ceil(TURN_CREDIT_CAP / (0.1 * TRAINING_SHARE / (1 - TRAINING_SHARE)))
    assert engine.log[turn - 1] == f"decode {owed_steps - 1 if sampling_waited else 0}"


def test_a_turn_runs_the_waiting_calls_of_a_step_past_its_credit() -> None:
    """One decode step earns 0.1 s; a 0.15 s call overdraws it, and the next waiting call still runs in
    the same turn (a second turn would cost another switch), within TURN_OVERDRAW."""
    with clocked_scheduler(train_seconds=0.15) as (engine, scheduler):
        sampled, finish_sample = finished()
        scheduler.submit_sample(SampleJob("sampler", REQUEST), finish_sample)
        assert engine.sampling.wait(30)
        done = []
        for seq in (1, 2):
            step_done, finish_step = finished()
            done.append(step_done)
            scheduler.submit_ordered(
                "run-a",
                seq,
                b"%d" % seq,
                f"r{seq}",
                Task(lambda: engine.optim_step("run-a", ADAM), finish_step),
            )
        engine.submitted.set()
        assert all(event.wait(30) for event in done) and sampled.wait(30)
    assert engine.log[:3] == ["decode 0", "train", "train"]
