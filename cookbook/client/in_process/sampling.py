"""`SamplingClient` in process: an immutable weight snapshot of this process's engine, sampled by id.

Each `sample` call is one request to the scheduler, as over HTTP: the calls of a burst (an RL step's
rollouts) go to it together, as one whole burst (`cookbook/client/sample_bursts.py`), and are batched
exactly as the server batches them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
from collections.abc import Hashable

from cookbook.client import types
from cookbook.client.abstract import SamplingClient, sample_request
from cookbook.client.in_process.server import InProcessServer, client_errors
from cookbook.client.loop import on_client_loop
from cookbook.client.sample_bursts import Answer, Waiting, bursts_for, settle
from cookbook.tokenizer_utils import Tokenizer
from server_stub import validation


class InProcessSamplingClient(SamplingClient):
    """Samples from one sampler (`sampler_id`) of an `InProcessServer`."""

    def __init__(self, server: InProcessServer, sampler_id: str, base_model: str | None = None):
        self._server = server
        self.sampler_id = sampler_id
        self._base_model = base_model
        self._seq = itertools.count(1)

    def __repr__(self) -> str:
        return f"InProcessSamplingClient({self.sampler_id!r}, base_model={self._base_model!r})"

    @on_client_loop
    async def sample_async(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> types.SampleResponse:
        request = sample_request(
            self.sampler_id,
            next(self._seq),
            prompt,
            num_samples,
            sampling_params,
            include_prompt_logprobs,
            topk_prompt_logprobs,
        )
        bursts = bursts_for(self._server, functools.partial(send_burst, self._server))
        return await bursts.sample(request)

    async def get_base_model_async(self) -> str:
        if self._base_model is None:
            with client_errors():
                self._base_model = self._server.engine.sampler_base_model(self.sampler_id)
        return self._base_model

    async def get_tokenizer_async(self) -> Tokenizer:
        return await self._server.tokenizer(await self.get_base_model_async())


async def send_burst(server: InProcessServer, waiting: Waiting) -> None:
    """Queue a burst on the scheduler together; each caller's answer as soon as its own request is done."""
    futures = server.sample([request for request, _ in waiting])

    async def relay(future: concurrent.futures.Future[types.SampleResponse], answer: Answer) -> None:
        try:
            settle(answer, result=await asyncio.wrap_future(future))
        except Exception as exc:
            settle(answer, exception=exc)

    await asyncio.gather(
        *(relay(future, answer) for future, (_, answer) in zip(futures, waiting, strict=True))
    )


async def open_sampler(
    server: InProcessServer,
    session: Hashable,
    *,
    model_path: str | None = None,
    base_model: str | None = None,
) -> InProcessSamplingClient:
    """A sampling client for a saved sampler checkpoint or a base model (a new sampler on the compute thread)."""
    if model_path is None and base_model is None:
        raise ValueError("create_sampling_client needs a model_path or a base_model")
    if model_path is not None and not model_path.startswith(types.TINKER_SCHEME):
        raise ValueError(f"model_path must start with {types.TINKER_SCHEME!r}, got {model_path!r}")
    engine = server.engine
    with client_errors():
        validation.check_sampler_source(base_model, model_path)
        if model_path is not None:
            engine.weights_info(model_path)  # 404 for an unknown checkpoint
        elif base_model is not None:
            engine.model_limits(base_model)  # 404 for an unknown base model
    created = await server.call(lambda: engine.create_sampler(base_model, model_path), "create_sampler")
    server.remember_sampler(session, created.sampler_id)
    return InProcessSamplingClient(server, created.sampler_id, base_model)
