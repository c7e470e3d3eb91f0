"""`TrainingClient` over HTTP: one model on the server, driven by an ordered call stream.

Every call runs on the client's background loop: it checks its arguments, takes the next `seq_id`,
encodes its body and queues the submission, then returns a future at once. The submissions leave
in seq_id order (`SequenceGate`), and each result is polled independently, so a loop can submit
step k+1 before it reads step k and the server always has work queued.

On the binary wire (the transport says when), forward and forward_backward go as one protobuf
`forward_backward` message (a forward sets `forward_only`), zstd-compressed when the server's client
config asks for it; every other call stays JSON.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from pydantic import BaseModel

from cookbook.client import errors, proto, types
from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.client.futures import APIFuture, ConcurrentAPIFuture
from cookbook.client.http.sampling import HttpSamplingClient, open_sampling_session
from cookbook.client.http.tokenizers import fetch_tokenizer
from cookbook.client.http.transport import encode
from cookbook.client.loop import background_loop, on_client_loop
from cookbook.tokenizer_utils import Tokenizer

if TYPE_CHECKING:
    from cookbook.client.http.service import Session

R = TypeVar("R", bound=BaseModel)
# A request body and the headers it needs beyond the transport's defaults.
Body: TypeAlias = tuple[bytes, dict[str, str] | None]


def json_body(request: BaseModel) -> Body:
    return encode(request), None


class SequenceGate:
    """Lets coroutines through one at a time, in increasing sequence numbers (loop-thread only).

    Calls take their seq_id in call order, but their submissions may take different times to
    send; each waits for its turn, sends, then hands the turn on, so the server sees 1, 2, 3, ...
    """

    def __init__(self, first: int = 1):
        self._current = first
        self._waiters: dict[int, asyncio.Future[None]] = {}

    @property
    def current(self) -> int:
        """The sequence number whose turn it is."""
        return self._current

    async def wait_turn(self, seq: int) -> None:
        if seq < self._current:
            raise RuntimeError(f"sequence number {seq} already had its turn (now {self._current})")
        if seq == self._current:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[seq] = waiter
        await waiter

    def advance(self, seq: int) -> None:
        """`seq` is done with its turn: wake the next one."""
        if seq != self._current:
            raise RuntimeError(f"sequence number {seq} finished out of turn (expected {self._current})")
        self._current += 1
        waiter = self._waiters.pop(self._current, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HttpTrainingClient(TrainingClient):
    """One trainable model (`model_id`) of a server session."""

    def __init__(self, session: Session, model_id: types.ModelID, base_model: str):
        self._session = session
        self._transport = session.transport
        self._model_id = model_id
        self.base_model = base_model
        self._next_seq_id = 1
        self._gate = SequenceGate(first=1)

    def __repr__(self) -> str:
        return f"HttpTrainingClient({self._model_id!r}, base_model={self.base_model!r})"

    @property
    def model_id(self) -> types.ModelID:
        return self._model_id

    # -- the ordered call stream --------------------------------------------------------------

    def _call(
        self,
        path: str,
        make_request: Callable[[int], BaseModel],
        response_type: type[R],
        make_body: Callable[[BaseModel], Body] = json_body,
    ) -> ConcurrentAPIFuture[R]:
        """Take the next seq_id, encode the request, and queue it; never waits for the work."""
        seq_id = self._next_seq_id
        body, headers = make_body(make_request(seq_id))  # a bad request raises here, seq_id unused
        self._next_seq_id += 1
        return ConcurrentAPIFuture(
            background_loop().submit(self._send(seq_id, path, body, headers, response_type))
        )

    async def _send(
        self, seq_id: int, path: str, body: bytes, headers: dict[str, str] | None, response_type: type[R]
    ) -> R:
        await self._gate.wait_turn(seq_id)
        try:
            request_id = await self._transport.submit(path, body, headers=headers)
        finally:
            self._gate.advance(seq_id)
        return await self._transport.retrieve(request_id, response_type)

    def _protobuf_body(self, request: BaseModel) -> Body:
        assert isinstance(request, (types.ForwardBackwardRequest, types.ForwardRequest))
        try:
            body = proto.forward_backward_request_to_proto(request)
        except ValueError as exc:
            raise errors.InvalidInputError(f"cannot encode the request as protobuf: {exc}") from exc
        headers = {"Content-Type": proto.PROTOBUF_CONTENT_TYPE}
        if self._session.config.proto_compress_fwdbwd:
            body = proto.zstd_compress(body)
            headers["Content-Encoding"] = proto.ZSTD
        return body, headers

    def _forward_call(
        self, fwd: types.ForwardBackwardInput, backward: bool
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """forward (`backward=False`) or forward_backward, on the wire the transport chose."""

        def make_request(seq: int) -> BaseModel:
            if backward:
                return types.ForwardBackwardRequest(
                    forward_backward_input=fwd, model_id=self._model_id, seq_id=seq
                )
            return types.ForwardRequest(forward_input=fwd, model_id=self._model_id, seq_id=seq)

        if self._transport.protobuf_requests:
            return self._call(
                "/forward_backward", make_request, types.ForwardBackwardOutput, self._protobuf_body
            )
        return self._call(
            "/forward_backward" if backward else "/forward", make_request, types.ForwardBackwardOutput
        )

    # -- operations ---------------------------------------------------------------------------

    @on_client_loop
    async def forward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self._forward_call(_forward_input(data, loss_fn, loss_fn_config), backward=False)

    @on_client_loop
    async def forward_backward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self._forward_call(_forward_input(data, loss_fn, loss_fn_config), backward=True)

    @on_client_loop
    async def optim_step_async(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        for name, value in adam_params.model_dump().items():
            if not math.isfinite(value):
                raise errors.InvalidInputError(f"adam_params.{name} is {value}: it must be a finite number")
        return self._call(
            "/optim_step",
            lambda seq: types.OptimStepRequest(adam_params=adam_params, model_id=self._model_id, seq_id=seq),
            types.OptimStepResponse,
        )

    @on_client_loop
    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
    ) -> APIFuture[types.SaveWeightsResponse]:
        return self._call(
            "/save_weights",
            lambda seq: types.SaveWeightsRequest(
                model_id=self._model_id, path=name, seq_id=seq, ttl_seconds=ttl_seconds, overwrite=overwrite
            ),
            types.SaveWeightsResponse,
        )

    @on_client_loop
    async def load_state_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=False)

    @on_client_loop
    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=True)

    def _load(self, path: str, optimizer: bool) -> APIFuture[types.LoadWeightsResponse]:
        return self._call(
            "/load_weights",
            lambda seq: types.LoadWeightsRequest(
                model_id=self._model_id, seq_id=seq, path=path, optimizer=optimizer
            ),
            types.LoadWeightsResponse,
        )

    @on_client_loop
    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self._save_for_sampler(name, ttl_seconds).map(_named_sampler_path)

    @on_client_loop
    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        """`name` is ignored (as in Tinker): the snapshot is ephemeral and has no path."""
        answer = await self._save_for_sampler(None, None)
        if answer.sampling_session_id is None:
            raise errors.CookbookError(
                "save_weights_for_sampler without a name returned no sampling_session_id"
            )
        return HttpSamplingClient(self._transport, answer.sampling_session_id, self.base_model)

    def _save_for_sampler(
        self,
        name: str | None,
        ttl_seconds: int | None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponseInternal]:
        sampler_seq_id = None if name is not None else self._session.next_sampler_seq_id()
        return self._call(
            "/save_weights_for_sampler",
            lambda seq: types.SaveWeightsForSamplerRequest(
                model_id=self._model_id,
                path=name,
                sampling_session_seq_id=sampler_seq_id,
                seq_id=seq,
                ttl_seconds=ttl_seconds,
            ),
            types.SaveWeightsForSamplerResponseInternal,
        )

    @on_client_loop
    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        return await open_sampling_session(self._session, model_path=model_path)

    @on_client_loop
    async def get_info_async(self) -> types.GetInfoResponse:
        return await self._transport.call(
            "/get_info", types.GetInfoRequest(model_id=self._model_id), types.GetInfoResponse
        )

    @on_client_loop
    async def get_tokenizer_async(self) -> Tokenizer:
        return await fetch_tokenizer(self._transport, self.base_model)


def _forward_input(
    data: list[types.Datum], loss_fn: types.LossFnType, loss_fn_config: dict[str, float] | None
) -> types.ForwardBackwardInput:
    """The body of a forward / forward_backward call, checked before any seq_id is used.

    JSON has no NaN or infinity (encoders write `null` and the server would report a confusing
    type error), so a non-finite loss input is refused here, naming the datum, key and position.
    """
    for d, datum in enumerate(data):
        for key, tensor in datum.loss_fn_inputs.items():
            if tensor.dtype != "float32":
                continue
            bad = _first_non_finite(tensor.data)
            if bad is not None:
                raise errors.InvalidInputError(
                    f"data[{d}].loss_fn_inputs.{key}[{bad}] is {tensor.data[bad]}: "
                    "loss inputs must be finite numbers"
                )
    return types.ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=loss_fn_config)


def _first_non_finite(values: list[float] | list[int]) -> int | None:
    # sum() runs in C; it is finite whenever every value is (barring overflow, re-checked below).
    if math.isfinite(sum(values)):
        return None
    return next((i for i, v in enumerate(values) if not math.isfinite(v)), None)


def _named_sampler_path(
    answer: types.SaveWeightsForSamplerResponseInternal,
) -> types.SaveWeightsForSamplerResponse:
    if answer.path is None:
        raise errors.CookbookError("save_weights_for_sampler with a name returned no path")
    return types.SaveWeightsForSamplerResponse(path=answer.path)
