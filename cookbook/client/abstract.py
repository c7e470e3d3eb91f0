"""The abstract clients that every recipe is written against.

Three roles, as in Tinker: a `ServiceClient` creates models and samplers; a `TrainingClient`
owns one trainable model (LoRA adapter or full weights) and runs forward/backward, optimizer
steps and checkpoints on it; a `SamplingClient` is an immutable snapshot of weights to sample
from.

Every operation is a coroutine, `name_async`; an implementation writes only those, and the sync
`name` beside each is derived from it (`cookbook.client.loop`). As in Tinker, calls that start
server work on a model return an `APIFuture`, so a loop can submit step k+1 before it reads step k:
`tc.forward_backward(...)` returns the future, `await tc.forward_backward_async(...)` returns the
same future (`await (await tc.forward_backward_async(...))` is the result). `sample` and
`compute_logprobs` return a future while their `_async` forms return the value; every other call
returns its value.

The composite operations (custom losses, clients from checkpoints, logprob computation) are
written once here on top of the primitives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cookbook.client import types
from cookbook.client.futures import APIFuture
from cookbook.client.loop import future_twin, sync_twin

if TYPE_CHECKING:
    import torch

    from cookbook.tokenizer_utils import Tokenizer

# (data, per-datum target logprobs) -> (scalar loss, metrics)
CustomLossFnV1 = Callable[[list[types.Datum], list["torch.Tensor"]], tuple["torch.Tensor", dict[str, float]]]


class SamplingClient(ABC):
    """An immutable snapshot of a model's weights that can be sampled and scored."""

    @abstractmethod
    async def sample_async(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> types.SampleResponse:
        """Generate `num_samples` continuations of `prompt`."""

    @abstractmethod
    async def get_base_model_async(self) -> str:
        """The base model this snapshot was derived from."""

    @abstractmethod
    async def get_tokenizer_async(self) -> Tokenizer:
        """The base model's tokenizer."""

    async def compute_logprobs_async(self, prompt: types.ModelInput) -> list[float | None]:
        """Logprob of every prompt token given its prefix; the first entry is None."""
        response = await self.sample_async(
            prompt, 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True
        )
        if response.prompt_logprobs is None:
            raise ValueError("the server returned no prompt logprobs")
        return response.prompt_logprobs

    sample = future_twin(sample_async)
    compute_logprobs = future_twin(compute_logprobs_async)
    get_base_model = sync_twin(get_base_model_async)
    get_tokenizer = sync_twin(get_tokenizer_async)


class TrainingClient(ABC):
    """One trainable model on the server. Calls run on the server in the order they were made."""

    @property
    @abstractmethod
    def model_id(self) -> types.ModelID:
        """The server's id of this model (also the run id in its checkpoint paths)."""

    # -- primitives --------------------------------------------------------------------------

    @abstractmethod
    async def forward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss and per-datum outputs without touching gradients."""

    @abstractmethod
    async def forward_backward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss, outputs, and gradients added to those accumulated since the last optim_step."""

    @abstractmethod
    async def optim_step_async(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        """Apply AdamW to the accumulated gradients and clear them."""

    @abstractmethod
    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
    ) -> APIFuture[types.SaveWeightsResponse]:
        """Save weights and optimizer state as `tinker://<run>/weights/<name>`."""

    @abstractmethod
    async def load_state_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights from a state checkpoint; the optimizer state is reset."""

    @abstractmethod
    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights and the Adam moments (to resume a run exactly)."""

    @abstractmethod
    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        """Save sampling weights as `tinker://<run>/sampler_weights/<name>`."""

    @abstractmethod
    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        """Snapshot the current weights (after all calls made so far) into a sampling client."""

    @abstractmethod
    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        """A sampling client for a saved sampler path."""

    @abstractmethod
    async def get_info_async(self) -> types.GetInfoResponse:
        """Model metadata (base model, LoRA rank)."""

    @abstractmethod
    async def get_tokenizer_async(self) -> Tokenizer:
        """The base model's tokenizer."""

    # -- composites --------------------------------------------------------------------------

    async def forward_backward_custom_async(
        self,
        data: list[types.Datum],
        loss_fn: CustomLossFnV1,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """A loss computed here, on the per-token logprobs, with gradients from the server.

        Runs `forward`, evaluates `loss_fn` on the logprobs with torch autograd, then runs a
        cross_entropy forward_backward with weights `-dL/dlogp`, whose gradient equals the
        custom loss's. Waits for the forward pass; the backward pass is the returned future.
        """
        from cookbook.client.custom_loss import run_custom_loss

        forward_out = await (await self.forward_async(_targets_only(data), "cross_entropy"))
        return await run_custom_loss(self, data, forward_out, loss_fn)

    forward = sync_twin(forward_async)
    forward_backward = sync_twin(forward_backward_async)
    forward_backward_custom = sync_twin(forward_backward_custom_async)
    optim_step = sync_twin(optim_step_async)
    save_state = sync_twin(save_state_async)
    load_state = sync_twin(load_state_async)
    load_state_with_optimizer = sync_twin(load_state_with_optimizer_async)
    save_weights_for_sampler = sync_twin(save_weights_for_sampler_async)
    save_weights_and_get_sampling_client = sync_twin(save_weights_and_get_sampling_client_async)
    create_sampling_client = sync_twin(create_sampling_client_async)
    get_info = sync_twin(get_info_async)
    get_tokenizer = sync_twin(get_tokenizer_async)


def sample_request(
    sampling_session_id: str,
    seq_id: int,
    prompt: types.ModelInput,
    num_samples: int,
    sampling_params: types.SamplingParams,
    include_prompt_logprobs: bool,
    topk_prompt_logprobs: int,
) -> types.SampleRequest:
    """The request one `sample_async` call makes, whichever client sends it."""
    return types.SampleRequest(
        sampling_session_id=sampling_session_id,
        seq_id=seq_id,
        num_samples=num_samples,
        prompt=prompt,
        sampling_params=sampling_params,
        prompt_logprobs=include_prompt_logprobs,
        topk_prompt_logprobs=topk_prompt_logprobs,
    )


def _targets_only(data: list[types.Datum]) -> list[types.Datum]:
    """The forward pass of a custom loss needs only target tokens (weights zero)."""
    out = []
    for datum in data:
        targets = datum.loss_fn_inputs["target_tokens"]
        n = len(targets.data) if targets.shape is None else targets.shape[0]
        out.append(
            types.Datum(
                model_input=datum.model_input, loss_fn_inputs={"target_tokens": targets, "weights": [0.0] * n}
            )
        )
    return out


class ServiceClient(ABC):
    """Entry point: creates training and sampling clients on one server."""

    # -- primitives --------------------------------------------------------------------------

    @abstractmethod
    async def create_training_client_async(
        self,
        base_model: str,
        lora_config: types.LoraConfig,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> TrainingClient:
        """A new trainable model. `lora_config.rank == 0` means full-weight training; `reward_head` adds a
        scalar reward head (needs a server whose capabilities list EXTENSION_REWARD_HEAD)."""

    @abstractmethod
    async def create_sampling_client_async(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> SamplingClient:
        """Sample from a saved `tinker://.../sampler_weights/...` path or from a base model."""

    @abstractmethod
    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        """Which base models the server offers, with their context lengths."""

    @abstractmethod
    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        """How a checkpoint was trained (base model, LoRA rank)."""

    @abstractmethod
    async def get_tokenizer_async(self, base_model: str) -> Tokenizer:
        """A base model's tokenizer, as the server has it."""

    @abstractmethod
    async def close_async(self) -> None:
        """Release connections (and whatever else the implementation holds)."""

    # -- composites --------------------------------------------------------------------------

    async def create_lora_training_client_async(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> TrainingClient:
        """Tinker's call. On this server `rank=0` trains the full weights instead of an adapter, and
        `reward_head=True` adds a scalar reward head (our extension)."""
        if not (train_mlp or train_attn or train_unembed):
            raise ValueError("at least one of train_mlp, train_attn, train_unembed must be True")
        config = types.LoraConfig(
            rank=rank, seed=seed, train_mlp=train_mlp, train_attn=train_attn, train_unembed=train_unembed
        )
        return await self.create_training_client_async(base_model, config, user_metadata, reward_head)

    async def create_training_client_from_state_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> TrainingClient:
        """A new model initialised with a checkpoint's weights and a fresh optimizer. It has a reward head
        when the checkpoint has one, or when `reward_head` asks for a new one (on a head-less checkpoint)."""
        client = await self._client_like_checkpoint(path, base_model, user_metadata, reward_head)
        await (await client.load_state_async(path))
        return client

    async def create_training_client_from_state_with_optimizer_async(
        self, path: str, base_model: str | None = None, user_metadata: dict[str, str] | None = None
    ) -> TrainingClient:
        """A new model with a checkpoint's weights and Adam state: resumes a run exactly."""
        client = await self._client_like_checkpoint(path, base_model, user_metadata, False)
        await (await client.load_state_with_optimizer_async(path))
        return client

    async def _client_like_checkpoint(
        self, path: str, base_model: str | None, user_metadata: dict[str, str] | None, reward_head: bool
    ) -> TrainingClient:
        info = await self.weights_info_async(path)
        return await self.create_training_client_async(
            base_model or info.base_model,
            _config_like(info),
            user_metadata,
            bool(info.reward_head) or reward_head,
        )

    create_training_client = sync_twin(create_training_client_async)
    create_lora_training_client = sync_twin(create_lora_training_client_async)
    create_training_client_from_state = sync_twin(create_training_client_from_state_async)
    create_training_client_from_state_with_optimizer = sync_twin(
        create_training_client_from_state_with_optimizer_async
    )
    create_sampling_client = sync_twin(create_sampling_client_async)
    get_server_capabilities = sync_twin(get_server_capabilities_async)
    weights_info = sync_twin(weights_info_async)
    get_tokenizer = sync_twin(get_tokenizer_async)
    close = sync_twin(close_async)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _config_like(info: types.WeightsInfoResponse) -> types.LoraConfig:
    """The LoRA settings a checkpoint was trained with (rank 0 = full weights)."""
    return types.LoraConfig(
        rank=(info.lora_rank or 0) if info.is_lora else 0,
        train_mlp=_default_true(info.train_mlp),
        train_attn=_default_true(info.train_attn),
        train_unembed=_default_true(info.train_unembed),
    )


def _default_true(flag: bool | None) -> bool:
    return True if flag is None else flag


__all__ = ["CustomLossFnV1", "SamplingClient", "ServiceClient", "TrainingClient"]
