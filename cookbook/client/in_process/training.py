"""`TrainingClient` in process: one model of this process's engine, driven by an ordered call stream.

Each call takes the next seq_id, is checked by the server's own validation and queued in the model's
lane of the scheduler at once, and returns a future the compute thread resolves: a loop can submit
step k+1 before it reads step k, as over HTTP, and the compute thread runs the calls in seq_id order.
A call the checks refuse uses no seq_id; its future fails with the error the HTTP client's would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cookbook.client import errors, types
from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.client.futures import APIFuture, ConcurrentAPIFuture
from cookbook.client.in_process.sampling import InProcessSamplingClient, open_sampler
from cookbook.client.in_process.server import InProcessServer, client_errors, refused
from cookbook.tokenizer_utils import Tokenizer
from server_stub import validation
from server_stub.engine import ModelLimits
from server_stub.training_pass import TrainingPass

R = TypeVar("R")


class InProcessTrainingClient(TrainingClient):
    """One trainable model (`model_id`) of an `InProcessServer`."""

    def __init__(self, server: InProcessServer, session: Hashable, model_id: types.ModelID, base_model: str):
        self._server = server
        self._session = session
        self._model_id = model_id
        self.base_model = base_model
        self._limits: ModelLimits = server.engine.model_limits(base_model)
        self._next_seq_id = 1
        self._lock = threading.Lock()  # a seq id is taken and queued in one step, whichever thread calls

    def __repr__(self) -> str:
        return f"InProcessTrainingClient({self._model_id!r}, base_model={self.base_model!r})"

    @property
    def model_id(self) -> types.ModelID:
        return self._model_id

    # -- the ordered call stream --------------------------------------------------------------

    def _call(
        self,
        label: str,
        check: Callable[[int], Any],
        run: Callable[[Any], R],
    ) -> ConcurrentAPIFuture[R]:
        """`check(seq_id)` validates and returns the request; `run(request)` is the engine call."""
        with self._lock:
            seq_id = self._next_seq_id
            try:
                with client_errors():
                    request = check(seq_id)
                    future = self._server.submit_ordered(self._model_id, seq_id, lambda: run(request), label)
            except errors.CookbookError as exc:
                return ConcurrentAPIFuture(refused(exc))
            self._next_seq_id += 1
        return ConcurrentAPIFuture(future)

    def _pass(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        config: dict[str, float] | None,
        backward: bool,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        fwd = types.ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=config)

        def check(seq_id: int) -> TrainingPass:
            training_pass = TrainingPass(
                self._model_id, seq_id, fwd, backward, where=""
            )  # fields named as on the binary wire
            training_pass.check(
                self._limits, self._server.config, self._server.has_reward_head(self._model_id)
            )
            return training_pass

        engine = self._server.engine
        return self._call(
            "forward_backward" if backward else "forward",
            check,
            lambda p: engine.forward_backward(p.model_id, p.fwd, backward=p.backward),
        )

    # -- operations ---------------------------------------------------------------------------

    async def forward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self._pass(data, loss_fn, loss_fn_config, backward=False)

    async def forward_backward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self._pass(data, loss_fn, loss_fn_config, backward=True)

    async def optim_step_async(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        def check(seq_id: int) -> types.OptimStepRequest:
            request = types.OptimStepRequest(adam_params=adam_params, model_id=self._model_id, seq_id=seq_id)
            validation.check_optim_step(request, self._limits)
            return request

        engine = self._server.engine
        return self._call("optim_step", check, lambda r: engine.optim_step(r.model_id, r.adam_params))

    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
    ) -> APIFuture[types.SaveWeightsResponse]:
        def check(seq_id: int) -> types.SaveWeightsRequest:
            request = types.SaveWeightsRequest(
                model_id=self._model_id,
                path=name,
                seq_id=seq_id,
                ttl_seconds=ttl_seconds,
                overwrite=overwrite,
            )
            validation.check_save_weights(request, self._limits)
            return request

        engine = self._server.engine
        return self._call(
            "save_weights",
            check,
            lambda r: engine.save_state(r.model_id, r.path or "", r.overwrite, r.ttl_seconds),
        )

    async def load_state_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=False)

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=True)

    def _load(self, path: str, optimizer: bool) -> APIFuture[types.LoadWeightsResponse]:
        engine = self._server.engine

        def check(seq_id: int) -> types.LoadWeightsRequest:
            request = types.LoadWeightsRequest(
                model_id=self._model_id, seq_id=seq_id, path=path, optimizer=optimizer
            )
            validation.check_load_weights(request, self._limits)
            engine.weights_info(path)  # 404 for an unknown checkpoint
            return request

        return self._call("load_weights", check, lambda r: engine.load_state(r.model_id, r.path, r.optimizer))

    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self._save_for_sampler(name, ttl_seconds).map(_named_sampler_path)

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        """`name` is ignored (as in Tinker): the snapshot is ephemeral and has no path."""
        answer = await self._save_for_sampler(None, None)
        if answer.sampling_session_id is None:
            raise errors.CookbookError(
                "save_weights_for_sampler without a name returned no sampling_session_id"
            )
        self._server.remember_sampler(self._session, answer.sampling_session_id)
        return InProcessSamplingClient(self._server, answer.sampling_session_id, self.base_model)

    def _save_for_sampler(
        self, name: str | None, ttl_seconds: int | None
    ) -> APIFuture[types.SaveWeightsForSamplerResponseInternal]:
        def check(seq_id: int) -> types.SaveWeightsForSamplerRequest:
            request = types.SaveWeightsForSamplerRequest(
                model_id=self._model_id, path=name, seq_id=seq_id, ttl_seconds=ttl_seconds
            )
            validation.check_save_weights_for_sampler(request, self._limits)
            return request

        engine = self._server.engine
        return self._call(
            "save_weights_for_sampler",
            check,
            lambda r: engine.save_sampler_weights(r.model_id, r.path, r.ttl_seconds),
        )

    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        return await open_sampler(self._server, self._session, model_path=model_path)

    async def get_info_async(self) -> types.GetInfoResponse:
        with client_errors():
            return self._server.engine.get_info(self._model_id)

    async def get_tokenizer_async(self) -> Tokenizer:
        return await self._server.tokenizer(self.base_model)


def _named_sampler_path(
    answer: types.SaveWeightsForSamplerResponseInternal,
) -> types.SaveWeightsForSamplerResponse:
    if answer.path is None:
        raise errors.CookbookError("save_weights_for_sampler with a name returned no path")
    return types.SaveWeightsForSamplerResponse(path=answer.path)
