"""A long sampling batch lets training calls run between its decode steps, within its credit."""

from __future__ import annotations

import threading
import time
from typing import Any

from cookbook.client import types
from server_stub.compute_turns import offer_turn
from server_stub.engine import SampleJob
from server_stub.scheduler import Scheduler, Task
from tests.server.web.web_fake_engine import BASE_MODEL, FakeEngine

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


def finished() -> tuple[threading.Event, Any]:
    done = threading.Event()
    return done, lambda result, exc: done.set()


def test_a_training_call_runs_between_decode_steps_of_a_long_batch() -> None:
    engine = SlowSampler()
    scheduler = Scheduler(engine)
    scheduler.start()
    try:
        created, finish = finished()
        scheduler.open_model(
            "run-a", BASE_MODEL, Task(lambda: engine.create_model("run-a", BASE_MODEL, None, None), finish)
        )
        assert created.wait(30)
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
    finally:
        scheduler.stop()
    position = engine.log.index("train")
    assert 0 < position < STEPS, "the training call waited for the whole generation"
