"""The contract between the web layer (routes, scheduler, futures) and the compute engine.

The web layer validates requests, orders each model's calls by seq_id, and runs every heavy
method below one call at a time (sampling on a thread of its own, the rest on the compute
thread); the engine therefore needs no locks for its heavy methods. The one overlap is asked for
by the engine itself: a decoding loop inside `sample` that touches no shared state may enter
`compute_turns.decode_beside()`, and other heavy calls may then run until it leaves. Methods marked *cheap* read metadata only and may be called from the
web thread at any time. Engine methods signal a caller's mistake by raising `UserError` (or a
subclass); the scheduler turns that into a future that resolves to a user error, and any other
exception into a server error. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cookbook.client import types


class UserError(Exception):
    """The caller asked for something invalid. `field` names the offending input when known."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFoundError(UserError):
    """An unknown model, sampler, base model or checkpoint."""

    status_code = 404


class ConflictError(UserError):
    """E.g. saving over an existing checkpoint without `overwrite`."""

    status_code = 409


@dataclass(frozen=True)
class ModelLimits:
    """What request validation needs to know about a base model."""

    vocab_size: int
    max_context_length: int


TokenSink = Callable[[int, int], None]
"""Told (sample index, token id) for each token a request's row samples, as it is sampled."""


@dataclass
class SampleJob:
    """One accepted sample request, bound to the sampler it runs on; `on_token` streams its tokens."""

    sampler_id: str
    request: types.SampleRequest
    on_token: TokenSink | None = None


class Engine(Protocol):
    """Models, training, sampling and checkpoints on one device."""

    # -- cheap metadata ----------------------------------------------------------------------

    def supported_models(self) -> list[types.SupportedModel]: ...

    def model_limits(self, base_model: str) -> ModelLimits:
        """Raises NotFoundError for an unknown base model."""
        ...

    def tokenizer(self, base_model: str) -> types.TokenizerResponse: ...

    def base_model_of(self, model_id: str) -> str:
        """The base model of a live training model; NotFoundError if unknown."""
        ...

    def sampler_base_model(self, sampler_id: str) -> str:
        """The base model of a live sampler; NotFoundError if unknown."""
        ...

    def get_info(self, model_id: str) -> types.GetInfoResponse: ...

    def get_sampler(self, sampler_id: str) -> types.GetSamplerResponse: ...

    def weights_info(self, tinker_path: str) -> types.WeightsInfoResponse: ...

    def training_run(self, run_id: str) -> types.TrainingRun: ...

    def list_checkpoints(self, run_id: str) -> types.CheckpointsListResponse: ...

    # -- heavy work (compute thread only) ----------------------------------------------------

    def create_model(
        self,
        model_id: str,
        base_model: str,
        lora_config: types.LoraConfig | None,
        user_metadata: dict[str, Any] | None,
        reward_head: bool = False,
    ) -> types.CreateModelResponse:
        """A new trainable model; `lora_config` None or rank 0 means full-weight training;
        `reward_head` adds a scalar reward head (our extension)."""
        ...

    def unload_model(self, model_id: str) -> types.UnloadModelResponse: ...

    def forward_backward(
        self, model_id: str, fwd: types.ForwardBackwardInput, backward: bool
    ) -> types.ForwardBackwardOutput:
        """Loss + per-datum logprobs; with `backward`, gradients accumulate until optim_step."""
        ...

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse: ...

    def save_state(
        self, model_id: str, name: str, overwrite: bool, ttl_seconds: int | None
    ) -> types.SaveWeightsResponse: ...

    def load_state(self, model_id: str, tinker_path: str, optimizer: bool) -> types.LoadWeightsResponse: ...

    def save_sampler_weights(
        self, model_id: str, name: str | None, ttl_seconds: int | None
    ) -> types.SaveWeightsForSamplerResponseInternal:
        """Named: a durable `sampler_weights` checkpoint (path). Unnamed: an in-memory snapshot
        (sampling_session_id). Either way the snapshot never changes afterwards."""
        ...

    def create_sampler(self, base_model: str | None, model_path: str | None) -> types.GetSamplerResponse:
        """A sampler for a base model or a saved sampler path."""
        ...

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None: ...

    def release_sampler(self, sampler_id: str) -> None:
        """Forget a sampler no client will use again (its snapshot and spill file go); unknown ids pass."""
        ...

    def sweep_storage(self) -> None:
        """Remove what interrupted saves left behind and checkpoints whose TTL has passed."""
        ...

    def export_archive(self, tinker_path: str, fmt: str) -> Path:
        """A new tar file of the checkpoint in export format `fmt`; the caller deletes it."""
        ...

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        """Run several sample requests together (batched per sampler); one result per job, in
        order. A job's own mistake is returned as a UserError in its slot, not raised."""
        ...
