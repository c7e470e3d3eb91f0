"""`TrainingClient` over HTTP: one model on the server, driven by an ordered call stream.

Every call takes the next `seq_id` at call time (under a lock, with its body encoded in the
caller's thread) and returns a future at once. The submissions then leave in seq_id order
(`SequenceGate`) from the background loop, and each result is polled independently, so a loop
can submit step k+1 before it reads step k and the server always has work queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from cookbook.client import errors, types
from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.client.futures import APIFuture, ConcurrentAPIFuture
from cookbook.client.http import codec
from cookbook.client.http.input_checks import check_adam_finite, check_datums_finite
from cookbook.client.http.loop import background_loop
from cookbook.client.http.ordering import SequenceGate
from cookbook.client.http.polling import retrieve, submit
from cookbook.client.http.sampling import HttpSamplingClient, open_sampling_session
from cookbook.client.http.session import Session
from cookbook.client.http.tokenizers import fetch_tokenizer
from cookbook.tokenizer_utils import Tokenizer

R = TypeVar("R", bound=BaseModel)


class HttpTrainingClient(TrainingClient):
    """One trainable model (`model_id`) of a server session."""

    def __init__(self, session: Session, model_id: types.ModelID, base_model: str):
        self._session = session
        self._transport = session.transport
        self._model_id = model_id
        self.base_model = base_model
        self._lock = threading.Lock()
        self._next_seq_id = 1
        self._gate = SequenceGate(first=1)

    def __repr__(self) -> str:
        return f"HttpTrainingClient({self._model_id!r}, base_model={self.base_model!r})"

    @property
    def model_id(self) -> types.ModelID:
        return self._model_id

    # -- the ordered call stream --------------------------------------------------------------

    def _call(self, path: str, make_request: Callable[[int], BaseModel], response_type: type[R],
              ) -> ConcurrentAPIFuture[R]:
        """Take the next seq_id, encode the request, and start it; never waits for the work."""
        with self._lock:
            seq_id = self._next_seq_id
            body = codec.encode(make_request(seq_id))  # a bad request raises here, seq_id unused
            self._next_seq_id += 1
            future = background_loop().submit(self._send(seq_id, path, body, response_type))
        return ConcurrentAPIFuture(future)

    async def _send(self, seq_id: int, path: str, body: bytes, response_type: type[R]) -> R:
        await self._gate.wait_turn(seq_id)
        try:
            untyped = await submit(self._transport, path, body)
        finally:
            self._gate.advance(seq_id)
        return await retrieve(self._transport, untyped.request_id, response_type)

    # -- primitives ---------------------------------------------------------------------------

    def forward(self, data: list[types.Datum], loss_fn: types.LossFnType,
                loss_fn_config: dict[str, float] | None = None) -> APIFuture[types.ForwardBackwardOutput]:
        fwd = _forward_input(data, loss_fn, loss_fn_config)
        return self._call("/forward", lambda seq: types.ForwardRequest(
            forward_input=fwd, model_id=self._model_id, seq_id=seq), types.ForwardBackwardOutput)

    def forward_backward(self, data: list[types.Datum], loss_fn: types.LossFnType,
                         loss_fn_config: dict[str, float] | None = None,
                         ) -> APIFuture[types.ForwardBackwardOutput]:
        fwd = _forward_input(data, loss_fn, loss_fn_config)
        return self._call("/forward_backward", lambda seq: types.ForwardBackwardRequest(
            forward_backward_input=fwd, model_id=self._model_id, seq_id=seq), types.ForwardBackwardOutput)

    def optim_step(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        check_adam_finite(adam_params)
        return self._call("/optim_step", lambda seq: types.OptimStepRequest(
            adam_params=adam_params, model_id=self._model_id, seq_id=seq), types.OptimStepResponse)

    def save_state(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                   ) -> APIFuture[types.SaveWeightsResponse]:
        return self._call("/save_weights", lambda seq: types.SaveWeightsRequest(
            model_id=self._model_id, path=name, seq_id=seq, ttl_seconds=ttl_seconds,
            overwrite=overwrite), types.SaveWeightsResponse)

    def _load(self, path: str, optimizer: bool) -> APIFuture[types.LoadWeightsResponse]:
        return self._call("/load_weights", lambda seq: types.LoadWeightsRequest(
            model_id=self._model_id, seq_id=seq, path=path, optimizer=optimizer),
            types.LoadWeightsResponse)

    def load_state(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=False)

    def load_state_with_optimizer(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=True)

    def _save_for_sampler(self, name: str | None, ttl_seconds: int | None,
                          ) -> APIFuture[types.SaveWeightsForSamplerResponseInternal]:
        sampler_seq_id = None if name is not None else self._session.next_sampler_seq_id()
        return self._call("/save_weights_for_sampler", lambda seq: types.SaveWeightsForSamplerRequest(
            model_id=self._model_id, path=name, sampling_session_seq_id=sampler_seq_id, seq_id=seq,
            ttl_seconds=ttl_seconds), types.SaveWeightsForSamplerResponseInternal)

    def save_weights_for_sampler(self, name: str, ttl_seconds: int | None = None,
                                 ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self._save_for_sampler(name, ttl_seconds).map(_named_sampler_path)

    def save_weights_and_get_sampling_client(self, name: str | None = None) -> SamplingClient:
        """`name` is ignored (as in Tinker): the snapshot is ephemeral and has no path."""
        return self._save_for_sampler(None, None).map(self._snapshot_client).result()

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        return await self._save_for_sampler(None, None).map(self._snapshot_client)

    def _snapshot_client(self, answer: types.SaveWeightsForSamplerResponseInternal) -> SamplingClient:
        if answer.sampling_session_id is None:
            raise errors.CookbookError("save_weights_for_sampler without a name returned no "
                                       "sampling_session_id")
        return HttpSamplingClient(self._transport, answer.sampling_session_id, self.base_model)

    def create_sampling_client(self, model_path: str) -> SamplingClient:
        return background_loop().run(open_sampling_session(self._session, model_path=model_path))

    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        return await background_loop().run_async(open_sampling_session(self._session, model_path=model_path))

    # -- metadata -----------------------------------------------------------------------------

    async def _get_info(self) -> types.GetInfoResponse:
        data = await self._transport.post("/get_info", types.GetInfoRequest(model_id=self._model_id))
        return types.GetInfoResponse.model_validate(data)

    def get_info(self) -> types.GetInfoResponse:
        return background_loop().run(self._get_info())

    async def get_info_async(self) -> types.GetInfoResponse:
        return await background_loop().run_async(self._get_info())

    def get_tokenizer(self) -> Tokenizer:
        return background_loop().run(fetch_tokenizer(self._transport, self.base_model))

    async def get_tokenizer_async(self) -> Tokenizer:
        return await background_loop().run_async(fetch_tokenizer(self._transport, self.base_model))


def _forward_input(data: list[types.Datum], loss_fn: types.LossFnType,
                   loss_fn_config: dict[str, float] | None) -> types.ForwardBackwardInput:
    """The validated body of a forward / forward_backward call (raises before any seq_id is used)."""
    check_datums_finite(data)
    return types.ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=loss_fn_config)


def _named_sampler_path(answer: types.SaveWeightsForSamplerResponseInternal,
                        ) -> types.SaveWeightsForSamplerResponse:
    if answer.path is None:
        raise errors.CookbookError("save_weights_for_sampler with a name returned no path")
    return types.SaveWeightsForSamplerResponse(path=answer.path)
