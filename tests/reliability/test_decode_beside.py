"""A lean decode hands the engine back for its decoding loop: training and other calls run beside it,
on the compute thread, with one intra-op thread fewer and a rest between calls; no two
engine-holding calls ever overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cookbook.client import types
from server_stub.compute_turns import decode_beside, offer_turn
from server_stub.engine import SampleJob
from server_stub.intra_op_threads import intra_op_threads, threads_beside_a_decode
from server_stub.scheduler import BESIDE_REST, Scheduler, Task
from server_stub.torch_engine import TorchEngine
from tests.reliability.scheduler_helpers import finished, scheduler_with_model
from tests.server.engine.engine_helpers import fwd, sample_request, sft_datum
from tests.server.web.web_fake_engine import FakeEngine

GUARD_SECONDS = 120  # only so that a broken scheduler fails the test instead of hanging it
ADAM = types.AdamParams(learning_rate=0.1)
REQUEST = types.SampleRequest(
    prompt=types.ModelInput.from_ints([1, 2]), sampling_params=types.SamplingParams(max_tokens=2)
)


class BesideSampler(FakeEngine):
    """sample() holds the engine, decodes beside others until the test's training call has run, then holds
    the engine again; optim_step logs the thread and intra-op thread count it ran with."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.trained = threading.Event()
        self.turn_offered_beside: bool | None = None
        self.threads_seen: list[tuple[str, int]] = []

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        self.log.append("prefill")
        with decode_beside() as others_run:
            self.log.append(f"decode beside: {others_run}")
            self.turn_offered_beside = offer_turn()
            assert self.trained.wait(GUARD_SECONDS), "no training call ran beside the decode"
            self.log.append("decode done")
        self.log.append("responses")
        return [types.SampleResponse(sequences=[]) for _ in jobs]

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        self.log.append("train")
        self.threads_seen.append((threading.current_thread().name, torch.get_num_threads()))
        self.trained.set()
        return types.OptimStepResponse(metrics={})


def test_a_training_call_runs_beside_a_lean_decode_with_one_thread_fewer() -> None:
    engine = BesideSampler()
    with (
        intra_op_threads(3),
        scheduler_with_model(engine) as scheduler,
    ):  # threads started inside begin with 3
        alone, finish_alone = finished()
        scheduler.submit_ordered(
            "run-a", 1, b"1", "req-1", Task(lambda: engine.optim_step("run-a", ADAM), finish_alone)
        )
        assert alone.wait(GUARD_SECONDS)
        engine.trained.clear()
        sampled, finish_sample = finished()
        scheduler.submit_sample(SampleJob("sampler", REQUEST), finish_sample)
        beside, finish_beside = finished()
        scheduler.submit_ordered(
            "run-a", 2, b"2", "req-2", Task(lambda: engine.optim_step("run-a", ADAM), finish_beside)
        )
        assert sampled.wait(GUARD_SECONDS) and beside.wait(GUARD_SECONDS)
    assert engine.log == ["train", "prefill", "decode beside: True", "train", "decode done", "responses"]
    assert engine.turn_offered_beside is False  # the training call was not waiting for a turn
    assert engine.threads_seen == [("server_stub-compute", 3), ("server_stub-compute", 2)]


class TwoCallsBeside(BesideSampler):
    """A decode that lasts until two training calls of 0.2 s have run beside it; each call's times logged."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[tuple[float, float]] = []

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        with decode_beside():
            assert self.trained.wait(GUARD_SECONDS)
        return [types.SampleResponse(sequences=[]) for _ in jobs]

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        start = time.monotonic()
        time.sleep(0.2)
        self.spans.append((start, time.monotonic()))
        if len(self.spans) == 2:
            self.trained.set()
        return types.OptimStepResponse(metrics={})


def test_beside_a_decode_the_compute_thread_rests_between_calls() -> None:
    engine = TwoCallsBeside()
    with scheduler_with_model(engine) as scheduler:
        sampled, finish_sample = finished()
        scheduler.submit_sample(SampleJob("sampler", REQUEST), finish_sample)
        for seq in (1, 2):
            scheduler.submit_ordered(
                "run-a",
                seq,
                bytes([seq]),
                f"req-{seq}",
                Task(lambda: engine.optim_step("run-a", ADAM), lambda result, exc: None),
            )
        assert sampled.wait(GUARD_SECONDS)
    (first_start, first_end), (second_start, _) = engine.spans
    assert second_start - first_end >= BESIDE_REST * (first_end - first_start) * 0.99


class HeldDecode(BesideSampler):
    """A decode whose beside loop ends while a training call holds the engine: the rest of the batch
    waits for that call, and calls queued meanwhile wait for the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.training_started = threading.Event()
        self.let_training_finish = threading.Event()

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        self.log.append("train starts")
        self.training_started.set()
        self.trained.set()
        assert self.let_training_finish.wait(GUARD_SECONDS)
        self.log.append("train ends")
        return types.OptimStepResponse(metrics={})

    def forward_backward(self, model_id: str, data: Any, backward: bool) -> types.ForwardBackwardOutput:
        self.log.append("forward_backward")
        return types.ForwardBackwardOutput(
            loss_fn_output_type="cross_entropy", loss_fn_outputs=[], metrics={}
        )

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        self.log.append("prefill")
        with decode_beside():
            assert self.training_started.wait(GUARD_SECONDS)
            self.log.append("decode done")
            self.let_training_finish.set()
        self.log.append("responses")
        return [types.SampleResponse(sequences=[]) for _ in jobs]


def test_the_batch_takes_the_engine_back_after_the_call_beside_it_and_before_the_next() -> None:
    engine = HeldDecode()
    with scheduler_with_model(engine) as scheduler:
        sampled, finish_sample = finished()
        scheduler.submit_sample(SampleJob("sampler", REQUEST), finish_sample)
        first, finish_first = finished()
        scheduler.submit_ordered(
            "run-a", 1, b"1", "req-1", Task(lambda: engine.optim_step("run-a", ADAM), finish_first)
        )
        assert engine.training_started.wait(GUARD_SECONDS)
        second, finish_second = finished()
        scheduler.submit_ordered(
            "run-a",
            2,
            b"2",
            "req-2",
            Task(lambda: engine.forward_backward("run-a", None, True), finish_second),
        )
        assert sampled.wait(GUARD_SECONDS) and first.wait(GUARD_SECONDS) and second.wait(GUARD_SECONDS)
    assert engine.log == [
        "prefill",
        "train starts",
        "decode done",
        "train ends",
        "responses",
        "forward_backward",
    ]


# -- the real engine ----------------------------------------------------------------------------

SAMPLE_TOKENS = 48


@contextmanager
def real_scheduler(tmp_path: Path) -> Iterator[tuple[TorchEngine, Scheduler]]:
    """A started scheduler on a real engine with LoRA models "train" and "serve" (its sampler is "serve")."""
    engine = TorchEngine(tmp_path / "storage", device="cpu")
    for name in ("train", "serve"):
        engine.create_model(name, "tiny-llama", types.LoraConfig(rank=4), None)
    scheduler = Scheduler(engine)
    scheduler.start()
    try:
        yield engine, scheduler
    finally:
        scheduler.stop()


def seeded_job(sampler_id: str, on_token: Any = None) -> SampleJob:
    request = sample_request([5, 6, 7], 4, max_tokens=SAMPLE_TOKENS, temperature=1.0, seed=11)
    return SampleJob(sampler_id, request, on_token)


def training_data() -> list[types.Datum]:
    rng = np.random.default_rng(0)
    return [sft_datum(rng.integers(1, 500, 33).tolist()) for _ in range(4)]


def test_training_beside_a_real_decode_changes_neither_result(tmp_path: Path) -> None:
    """The decode waits (in its token stream) until a training step of another model on the same base has
    finished: the step ran beside it. Its tokens and the step's loss equal those of each run alone."""
    with real_scheduler(tmp_path) as (engine, scheduler):
        sampler = engine.save_sampler_weights("serve", None, None).sampling_session_id
        alone = scheduler.call(lambda: engine.sample([seeded_job(sampler)])[0]).result(GUARD_SECONDS)
        trained = threading.Event()
        tokens_after_training: list[int] = []

        def wait_for_training(sample: int, token: int) -> None:
            if sample != 0:
                return
            if not tokens_after_training:
                assert trained.wait(GUARD_SECONDS), "the training step did not run beside the decode"
            tokens_after_training.append(token)

        beside: dict[str, Any] = {}
        sampled = threading.Event()
        scheduler.submit_sample(
            seeded_job(sampler, wait_for_training),
            lambda result, exc: (beside.update(result=result, exc=exc), sampled.set()),
        )
        loss = {}

        def step() -> None:
            out = engine.forward_backward("train", fwd(training_data()), backward=True)
            loss["beside"] = out.metrics["loss:sum"]
            trained.set()

        scheduler.submit_ordered("train", 1, b"1", "req-1", Task(step, lambda result, exc: None))
        assert sampled.wait(GUARD_SECONDS) and beside["exc"] is None
    assert tokens_after_training == beside["result"].sequences[0].tokens  # the whole decode streamed
    assert [s.tokens for s in beside["result"].sequences] == [s.tokens for s in alone.sequences]

    fresh = TorchEngine(tmp_path / "fresh", device="cpu")
    fresh.create_model("train", "tiny-llama", types.LoraConfig(rank=4), None)
    out = fresh.forward_backward("train", fwd(training_data()), backward=True)
    assert loss["beside"] == out.metrics["loss:sum"]


@pytest.mark.parametrize("lora", [None, types.LoraConfig(rank=8)], ids=["full", "lora"])
def test_a_step_beside_a_decode_computes_the_same_bits_on_fewer_threads(
    tmp_path: Path, lora: types.LoraConfig | None
) -> None:
    """Whether a step ran beside a decode depends on timing; its result must not, or the same seed would
    not give the same curves run to run. Uneven lengths, so that the pass cuts chunks."""
    rng = np.random.default_rng(0)
    data = [sft_datum(rng.integers(1, 500, int(n)).tolist()) for n in rng.integers(20, 90, 32)]
    results = []
    for threads in (2, threads_beside_a_decode_of(2)):
        engine = TorchEngine(tmp_path / f"threads-{threads}", device="cpu")
        engine.create_model("m", "tiny-llama", lora, None)
        with intra_op_threads(threads):
            out = engine.forward_backward("m", fwd(data), backward=True)
            engine.optim_step("m", ADAM)
        weights = engine._models["m"].snapshot()
        results.append(([o["logprobs"].data for o in out.loss_fn_outputs], weights))
    (logprobs_alone, weights_alone), (logprobs_beside, weights_beside) = results
    assert logprobs_alone == logprobs_beside
    assert all(torch.equal(weights_alone[name], weights_beside[name]) for name in weights_alone)


def threads_beside_a_decode_of(process_threads: int) -> int:
    """What the compute thread runs on beside a decode, for a process of `process_threads` threads."""
    with intra_op_threads(process_threads):
        return threads_beside_a_decode()
