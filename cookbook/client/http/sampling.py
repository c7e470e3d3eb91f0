"""`SamplingClient` over HTTP: an immutable weight snapshot on the server, sampled by id.

`sample` returns a future at once; any number can be in flight together and the server batches
them. Calls made together go to the server together (`cookbook/client/sample_bursts.py`). The
client pickles to (settings, sampler id, base model): a worker process that unpickles it opens its
own connections on first use.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from typing import TYPE_CHECKING, Any

from cookbook.client import types
from cookbook.client.abstract import SamplingClient, sample_request
from cookbook.client.http.sample_batches import send_burst
from cookbook.client.http.settings import ClientSettings
from cookbook.client.http.tokenizers import fetch_tokenizer
from cookbook.client.http.transport import Transport, shared_transport
from cookbook.client.loop import on_client_loop
from cookbook.client.sample_bursts import bursts_for
from cookbook.tokenizer_utils import Tokenizer

if TYPE_CHECKING:
    from cookbook.client.http.service import Session


def _unpickled_seq_start() -> int:
    """Copies of a client in other processes number their requests far from the original's."""
    return 1_000_000_000 * (uuid.uuid4().int % 1_000_000_000 + 1)


class HttpSamplingClient(SamplingClient):
    """Samples from one sampling session (`sampling_session_id`) of a server."""

    def __init__(
        self,
        transport: Transport,
        sampling_session_id: str,
        base_model: str | None = None,
        first_seq_id: int = 1,
    ):
        self._transport = transport
        self.sampling_session_id = sampling_session_id
        self._base_model = base_model
        self._seq = itertools.count(first_seq_id)

    def __repr__(self) -> str:
        return f"HttpSamplingClient({self.sampling_session_id!r}, base_model={self._base_model!r})"

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
            self.sampling_session_id,
            next(self._seq),
            prompt,
            num_samples,
            sampling_params,
            include_prompt_logprobs,
            topk_prompt_logprobs,
        )
        bursts = bursts_for(self._transport, functools.partial(send_burst, self._transport))
        return await bursts.sample(request)

    @on_client_loop
    async def get_base_model_async(self) -> str:
        if self._base_model is None:
            data = await self._transport.get(f"/samplers/{self.sampling_session_id}")
            self._base_model = types.GetSamplerResponse.model_validate(data).base_model
        return self._base_model

    @on_client_loop
    async def get_tokenizer_async(self) -> Tokenizer:
        return await fetch_tokenizer(self._transport, await self.get_base_model_async())

    # -- pickling -----------------------------------------------------------------------------

    @property
    def settings(self) -> ClientSettings:
        return self._transport.settings

    def __reduce__(self) -> tuple[Any, tuple[ClientSettings, str, str | None]]:
        return (_restore_sampling_client, (self.settings, self.sampling_session_id, self._base_model))


def _restore_sampling_client(
    settings: ClientSettings, sampling_session_id: str, base_model: str | None
) -> HttpSamplingClient:
    """Unpickle: reuse this process's connection to that server (opened lazily)."""
    return HttpSamplingClient(
        shared_transport(settings), sampling_session_id, base_model, first_seq_id=_unpickled_seq_start()
    )


async def open_sampling_session(
    session: Session, *, model_path: str | None = None, base_model: str | None = None
) -> HttpSamplingClient:
    """A sampling client for a saved sampler checkpoint or a base model."""
    if model_path is None and base_model is None:
        raise ValueError("create_sampling_client needs a model_path or a base_model")
    if model_path is not None and not model_path.startswith(types.TINKER_SCHEME):
        raise ValueError(f"model_path must start with {types.TINKER_SCHEME!r}, got {model_path!r}")
    session_id = await session.ensure()
    request = types.CreateSamplingSessionRequest(
        session_id=session_id,
        sampling_session_seq_id=session.next_sampler_seq_id(),
        base_model=base_model,
        model_path=model_path,
    )
    answer = await session.transport.call(
        "/create_sampling_session", request, types.CreateSamplingSessionResponse
    )
    return HttpSamplingClient(session.transport, answer.sampling_session_id, base_model)
