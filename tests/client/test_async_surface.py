"""Each operation is one coroutine: no `*_async` call blocks the caller's loop; the sync surface is derived."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import torch

from cookbook.client import APIFuture, SamplingClient, ServiceClient, TrainingClient, types
from cookbook.client.http import HttpSamplingClient, HttpServiceClient, HttpTrainingClient
from cookbook.client.loop import background_loop

from .fake_server import FakeServer, fake_logprob

PROMPT = types.ModelInput.from_ints([0, 1, 2])
PARAMS = types.SamplingParams(max_tokens=2)
STATE = "tinker://model-9/weights/step-3"
DATUM = types.Datum(
    model_input=types.ModelInput.from_ints([1, 2]),
    loss_fn_inputs={"target_tokens": [2, 3], "weights": [1.0, 1.0]},
)


def custom_loss(
    data: list[types.Datum], logprobs: list[torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    return -logprobs[0].sum(), {}


Clients = tuple[HttpServiceClient, TrainingClient, SamplingClient]
# Every async call of the three clients; a training call's future is awaited too (double await).
ASYNC_CALLS: dict[str, Callable[[Clients], Awaitable[Any]]] = {
    "service.create_lora_training_client_async": lambda c: c[0].create_lora_training_client_async(
        "fake-base", rank=2
    ),
    "service.create_training_client_async": lambda c: c[0].create_training_client_async(
        "fake-base", types.LoraConfig(rank=2)
    ),
    "service.create_training_client_from_state_async": lambda c: c[0].create_training_client_from_state_async(
        STATE
    ),
    "service.create_training_client_from_state_with_optimizer_async": lambda c: c[
        0
    ].create_training_client_from_state_with_optimizer_async(STATE),
    "service.create_sampling_client_async": lambda c: c[0].create_sampling_client_async(
        base_model="fake-base"
    ),
    "service.get_server_capabilities_async": lambda c: c[0].get_server_capabilities_async(),
    "service.weights_info_async": lambda c: c[0].weights_info_async(STATE),
    "service.get_tokenizer_async": lambda c: c[0].get_tokenizer_async("fake-base"),
    "training.forward_async": lambda c: _twice(c[1].forward_async([DATUM], "cross_entropy")),
    "training.forward_backward_async": lambda c: _twice(
        c[1].forward_backward_async([DATUM], "cross_entropy")
    ),
    "training.forward_backward_custom_async": lambda c: _twice(
        c[1].forward_backward_custom_async([DATUM], custom_loss)
    ),
    "training.optim_step_async": lambda c: _twice(c[1].optim_step_async(types.AdamParams())),
    "training.save_state_async": lambda c: _twice(c[1].save_state_async("s")),
    "training.load_state_async": lambda c: _twice(c[1].load_state_async(STATE)),
    "training.load_state_with_optimizer_async": lambda c: _twice(c[1].load_state_with_optimizer_async(STATE)),
    "training.save_weights_for_sampler_async": lambda c: _twice(c[1].save_weights_for_sampler_async("p")),
    "training.save_weights_and_get_sampling_client_async": lambda c: c[
        1
    ].save_weights_and_get_sampling_client_async(),
    "training.create_sampling_client_async": lambda c: c[1].create_sampling_client_async(
        "tinker://model-0/sampler_weights/p"
    ),
    "training.get_info_async": lambda c: c[1].get_info_async(),
    "training.get_tokenizer_async": lambda c: c[1].get_tokenizer_async(),
    "sampling.sample_async": lambda c: c[2].sample_async(PROMPT, 1, PARAMS),
    "sampling.compute_logprobs_async": lambda c: c[2].compute_logprobs_async(PROMPT),
    "sampling.get_base_model_async": lambda c: c[2].get_base_model_async(),
    "sampling.get_tokenizer_async": lambda c: c[2].get_tokenizer_async(),
}


async def _twice(call: Awaitable[APIFuture[Any]]) -> Any:
    return await (await call)


def test_the_table_names_every_async_method() -> None:
    public = {
        f"{role}.{name}"
        for role, cls in (
            ("service", ServiceClient),
            ("training", TrainingClient),
            ("sampling", SamplingClient),
        )
        for name, _ in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert public - {"service.close_async"} == set(ASYNC_CALLS)


@pytest.mark.parametrize("name", sorted(ASYNC_CALLS))
def test_async_call_leaves_the_callers_loop_running_while_the_server_is_slow(
    name: str, fake: FakeServer, service: HttpServiceClient
) -> None:
    training = service.create_lora_training_client("fake-base", rank=8)
    sampler = service.create_sampling_client(model_path="tinker://model-0/sampler_weights/s")
    fake.answer_delay_s = 0.02

    async def main() -> tuple[Any, int]:
        ticks_while_server_held_an_answer = 0

        async def ticker() -> None:
            nonlocal ticks_while_server_held_an_answer
            while True:
                ticks_while_server_held_an_answer += fake.answers_held > 0
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        result = await ASYNC_CALLS[name]((service, training, sampler))
        task.cancel()
        return result, ticks_while_server_held_an_answer

    result, ticks = asyncio.run(main())
    assert result is not None
    assert ticks > 0  # a blocking call would hold the loop for as long as the server holds its answer


def test_awaiting_a_training_call_returns_its_future_before_the_server_answers(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    hold = background_loop().run(_make_event())
    fake.hold_submissions = hold

    async def main() -> types.ForwardBackwardOutput:
        fwd = await tc.forward_backward_async([DATUM], "cross_entropy")
        opt = await tc.optim_step_async(types.AdamParams())  # submitted before step 1 is read
        assert not fwd.done() and not opt.done()
        background_loop().loop.call_soon_threadsafe(hold.set)
        await opt
        return await fwd

    out = asyncio.run(main())
    assert out.loss_fn_outputs[0]["logprobs"].data == pytest.approx([fake_logprob(2), fake_logprob(3)])
    assert [b["seq_id"] for b in fake.bodies("/forward_backward") + fake.bodies("/optim_step")] == [1, 2]


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


# -- the sync surface, derived ------------------------------------------------------------------


class TableSampler(SamplingClient):
    """Written as coroutines only; answers from a table, waiting for `release` before sampling."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def sample_async(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> types.SampleResponse:
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        tokens = prompt.to_ints()
        return types.SampleResponse(
            sequences=[types.SampledSequence(stop_reason="length", tokens=tokens[:1])],
            prompt_logprobs=[None, *[-float(t) for t in tokens[1:]]],
        )

    async def get_base_model_async(self) -> str:
        return "table"

    async def get_tokenizer_async(self) -> Any:
        raise NotImplementedError("no tokenizer here")


def test_an_implementation_writes_coroutines_only_and_gets_the_sync_methods() -> None:
    for cls in (ServiceClient, TrainingClient, SamplingClient):
        assert all(name.endswith("_async") or name == "model_id" for name in cls.__abstractmethods__)
    sampler = TableSampler()
    fut = sampler.sample(PROMPT, 1, PARAMS)
    logprobs = sampler.compute_logprobs(PROMPT)
    assert isinstance(fut, APIFuture) and not fut.done() and not logprobs.done()  # returned at once
    sampler.release.set()
    assert fut.result().sequences[0].tokens == [0]
    assert logprobs.result() == [None, -1.0, -2.0]
    assert sampler.get_base_model() == "table"
    with pytest.raises(NotImplementedError, match="no tokenizer here"):
        sampler.get_tokenizer()
    assert (
        inspect.signature(SamplingClient.sample).parameters.keys()
        == inspect.signature(SamplingClient.sample_async).parameters.keys()
    )


def test_a_sync_call_from_the_clients_own_loop_is_refused() -> None:
    async def from_the_loop() -> None:
        TableSampler().get_base_model()

    with pytest.raises(RuntimeError, match="use the \\*_async method"):
        background_loop().run(from_the_loop())


def test_http_clients_write_coroutines_only() -> None:
    for cls in (HttpServiceClient, HttpTrainingClient, HttpSamplingClient):
        public = {
            name: value for name, value in vars(cls).items() if not name.startswith("_") and callable(value)
        }
        assert public and all(inspect.iscoroutinefunction(value) for value in public.values()), cls
