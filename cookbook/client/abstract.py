"""The abstract training client that every recipe is written against.

Three roles, as in Tinker: a `ServiceClient` creates models and samplers; a `TrainingClient`
owns one trainable model (LoRA adapter or full weights) and runs forward/backward, optimizer
steps and checkpoints on it; a `SamplingClient` is an immutable snapshot of weights to sample
from. Calls that start server work return an `APIFuture` at once (sync methods never block on
the work itself) so a loop can submit step k+1 before reading step k. Every method has an
`*_async` twin; as in Tinker, the async twins of future-returning calls return the same future
(`await (await tc.forward_backward_async(...))`), while `sample_async`, `compute_logprobs_async`,
`get_info_async` and the `create_*_async` calls return the value itself.

Implementations provide the abstract primitives; the composite operations (custom losses,
clients from checkpoints, logprob computation) are written once here on top of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cookbook.client import types
from cookbook.client.futures import APIFuture

if TYPE_CHECKING:
    import torch

    from cookbook.tokenizer_utils import Tokenizer

# (data, per-datum target logprobs) -> (scalar loss, metrics)
CustomLossFnV1 = Callable[[list[types.Datum], list["torch.Tensor"]], tuple["torch.Tensor", dict[str, float]]]


class SamplingClient(ABC):
    """An immutable snapshot of a model's weights that can be sampled and scored."""

    @abstractmethod
    def sample(self, prompt: types.ModelInput, num_samples: int, sampling_params: types.SamplingParams,
               include_prompt_logprobs: bool = False, topk_prompt_logprobs: int = 0,
               ) -> APIFuture[types.SampleResponse]:
        """Start generating `num_samples` continuations of `prompt`."""

    @abstractmethod
    def get_base_model(self) -> str:
        """The base model this snapshot was derived from."""

    @abstractmethod
    def get_tokenizer(self) -> Tokenizer:
        """The base model's tokenizer."""

    async def sample_async(self, prompt: types.ModelInput, num_samples: int,
                           sampling_params: types.SamplingParams, include_prompt_logprobs: bool = False,
                           topk_prompt_logprobs: int = 0) -> types.SampleResponse:
        return await self.sample(prompt, num_samples, sampling_params, include_prompt_logprobs,
                                 topk_prompt_logprobs)

    def compute_logprobs(self, prompt: types.ModelInput) -> APIFuture[list[float | None]]:
        """Logprob of every prompt token given its prefix; the first entry is None."""
        fut = self.sample(prompt, 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True)
        return fut.map(_prompt_logprobs_of)

    async def compute_logprobs_async(self, prompt: types.ModelInput) -> list[float | None]:
        return await self.compute_logprobs(prompt)

    async def get_base_model_async(self) -> str:
        return self.get_base_model()


def _prompt_logprobs_of(response: types.SampleResponse) -> list[float | None]:
    if response.prompt_logprobs is None:
        raise ValueError("the server returned no prompt logprobs")
    return response.prompt_logprobs


class TrainingClient(ABC):
    """One trainable model on the server. Calls run on the server in the order they were made."""

    @property
    @abstractmethod
    def model_id(self) -> types.ModelID:
        """The server's id of this model (also the run id in its checkpoint paths)."""

    # -- primitives --------------------------------------------------------------------------

    @abstractmethod
    def forward(self, data: list[types.Datum], loss_fn: types.LossFnType,
                loss_fn_config: dict[str, float] | None = None) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss and per-datum outputs without touching gradients."""

    @abstractmethod
    def forward_backward(self, data: list[types.Datum], loss_fn: types.LossFnType,
                         loss_fn_config: dict[str, float] | None = None,
                         ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss, outputs, and gradients added to those accumulated since the last optim_step."""

    @abstractmethod
    def optim_step(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        """Apply AdamW to the accumulated gradients and clear them."""

    @abstractmethod
    def save_state(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                   ) -> APIFuture[types.SaveWeightsResponse]:
        """Save weights and optimizer state as `tinker://<run>/weights/<name>`."""

    @abstractmethod
    def load_state(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights from a state checkpoint; the optimizer state is reset."""

    @abstractmethod
    def load_state_with_optimizer(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights and the Adam moments (to resume a run exactly)."""

    @abstractmethod
    def save_weights_for_sampler(self, name: str, ttl_seconds: int | None = None,
                                 ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        """Save sampling weights as `tinker://<run>/sampler_weights/<name>`."""

    @abstractmethod
    def save_weights_and_get_sampling_client(self, name: str | None = None) -> SamplingClient:
        """Snapshot the current weights (after all calls made so far) into a sampling client."""

    @abstractmethod
    def create_sampling_client(self, model_path: str) -> SamplingClient:
        """A sampling client for a saved sampler path."""

    @abstractmethod
    def get_info(self) -> types.GetInfoResponse:
        """Model metadata (base model, LoRA rank)."""

    @abstractmethod
    def get_tokenizer(self) -> Tokenizer:
        """The base model's tokenizer."""

    # -- composites --------------------------------------------------------------------------

    def forward_backward_custom(self, data: list[types.Datum], loss_fn: CustomLossFnV1,
                                ) -> APIFuture[types.ForwardBackwardOutput]:
        """A loss computed here, on the per-token logprobs, with gradients from the server.

        Runs `forward`, evaluates `loss_fn` on the logprobs with torch autograd, then runs a
        cross_entropy forward_backward with weights `-dL/dlogp`, whose gradient equals the
        custom loss's. Blocks until the forward pass is back; the backward pass is a future.
        """
        from cookbook.client.custom_loss import run_custom_loss

        forward_out = self.forward(_targets_only(data), "cross_entropy").result()
        return run_custom_loss(self, data, forward_out, loss_fn)

    async def forward_backward_custom_async(self, data: list[types.Datum], loss_fn: CustomLossFnV1,
                                            ) -> APIFuture[types.ForwardBackwardOutput]:
        from cookbook.client.custom_loss import run_custom_loss

        forward_out = await self.forward(_targets_only(data), "cross_entropy")
        return run_custom_loss(self, data, forward_out, loss_fn)

    # -- async twins -------------------------------------------------------------------------

    async def forward_async(self, data: list[types.Datum], loss_fn: types.LossFnType,
                            loss_fn_config: dict[str, float] | None = None,
                            ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward(data, loss_fn, loss_fn_config)

    async def forward_backward_async(self, data: list[types.Datum], loss_fn: types.LossFnType,
                                     loss_fn_config: dict[str, float] | None = None,
                                     ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward(data, loss_fn, loss_fn_config)

    async def optim_step_async(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        return self.optim_step(adam_params)

    async def save_state_async(self, name: str, ttl_seconds: int | None = None, overwrite: bool = False,
                               ) -> APIFuture[types.SaveWeightsResponse]:
        return self.save_state(name, ttl_seconds, overwrite)

    async def load_state_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_state(path)

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_state_with_optimizer(path)

    async def save_weights_for_sampler_async(self, name: str, ttl_seconds: int | None = None,
                                             ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self.save_weights_for_sampler(name, ttl_seconds)

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        return self.save_weights_and_get_sampling_client(name)

    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        return self.create_sampling_client(model_path)

    async def get_info_async(self) -> types.GetInfoResponse:
        return self.get_info()


def _targets_only(data: list[types.Datum]) -> list[types.Datum]:
    """The forward pass of a custom loss needs only target tokens (weights zero)."""
    out = []
    for datum in data:
        targets = datum.loss_fn_inputs["target_tokens"]
        n = len(targets.data) if targets.shape is None else targets.shape[0]
        out.append(types.Datum(model_input=datum.model_input,
                               loss_fn_inputs={"target_tokens": targets, "weights": [0.0] * n}))
    return out


class ServiceClient(ABC):
    """Entry point: creates training and sampling clients on one server."""

    # -- primitives --------------------------------------------------------------------------

    @abstractmethod
    def create_training_client(self, base_model: str, lora_config: types.LoraConfig,
                               user_metadata: dict[str, str] | None = None) -> TrainingClient:
        """A new trainable model. `lora_config.rank == 0` means full-weight training."""

    @abstractmethod
    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None,
                               ) -> SamplingClient:
        """Sample from a saved `tinker://.../sampler_weights/...` path or from a base model."""

    @abstractmethod
    def get_server_capabilities(self) -> types.GetServerCapabilitiesResponse:
        """Which base models the server offers, with their context lengths."""

    @abstractmethod
    def weights_info(self, path: str) -> types.WeightsInfoResponse:
        """How a checkpoint was trained (base model, LoRA rank)."""

    @abstractmethod
    def get_tokenizer(self, base_model: str) -> Tokenizer:
        """A base model's tokenizer, as the server has it."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (and whatever else the implementation holds)."""

    # -- composites --------------------------------------------------------------------------

    def create_lora_training_client(self, base_model: str, rank: int = 32, seed: int | None = None,
                                    train_mlp: bool = True, train_attn: bool = True,
                                    train_unembed: bool = True,
                                    user_metadata: dict[str, str] | None = None) -> TrainingClient:
        """Tinker's call. On this server `rank=0` trains the full weights instead of an adapter."""
        config = _lora_config(rank, seed, train_mlp, train_attn, train_unembed)
        return self.create_training_client(base_model, config, user_metadata)

    def create_training_client_from_state(self, path: str, base_model: str | None = None,
                                          user_metadata: dict[str, str] | None = None) -> TrainingClient:
        """A new model initialised with a checkpoint's weights and a fresh optimizer."""
        client = self._client_like_checkpoint(path, base_model, user_metadata)
        client.load_state(path).result()
        return client

    def create_training_client_from_state_with_optimizer(
            self, path: str, base_model: str | None = None,
            user_metadata: dict[str, str] | None = None) -> TrainingClient:
        """A new model with a checkpoint's weights and Adam state: resumes a run exactly."""
        client = self._client_like_checkpoint(path, base_model, user_metadata)
        client.load_state_with_optimizer(path).result()
        return client

    def _client_like_checkpoint(self, path: str, base_model: str | None,
                                user_metadata: dict[str, str] | None) -> TrainingClient:
        info = self.weights_info(path)
        return self.create_training_client(base_model or info.base_model, _config_like(info), user_metadata)

    async def _client_like_checkpoint_async(self, path: str, base_model: str | None,
                                            user_metadata: dict[str, str] | None) -> TrainingClient:
        info = await self.weights_info_async(path)
        return await self.create_training_client_async(base_model or info.base_model, _config_like(info),
                                                       user_metadata)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- async twins -------------------------------------------------------------------------
    # The primitives' defaults call the sync versions; network implementations override them so
    # that the composites below never block the caller's event loop.

    async def create_training_client_async(self, base_model: str, lora_config: types.LoraConfig,
                                           user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return self.create_training_client(base_model, lora_config, user_metadata)

    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        return self.weights_info(path)

    async def get_tokenizer_async(self, base_model: str) -> Tokenizer:
        return self.get_tokenizer(base_model)

    async def create_lora_training_client_async(self, base_model: str, rank: int = 32,
                                                seed: int | None = None, train_mlp: bool = True,
                                                train_attn: bool = True, train_unembed: bool = True,
                                                user_metadata: dict[str, str] | None = None,
                                                ) -> TrainingClient:
        config = _lora_config(rank, seed, train_mlp, train_attn, train_unembed)
        return await self.create_training_client_async(base_model, config, user_metadata)

    async def create_training_client_from_state_async(self, path: str, base_model: str | None = None,
                                                      user_metadata: dict[str, str] | None = None,
                                                      ) -> TrainingClient:
        client = await self._client_like_checkpoint_async(path, base_model, user_metadata)
        await client.load_state(path)
        return client

    async def create_training_client_from_state_with_optimizer_async(
            self, path: str, base_model: str | None = None,
            user_metadata: dict[str, str] | None = None) -> TrainingClient:
        client = await self._client_like_checkpoint_async(path, base_model, user_metadata)
        await client.load_state_with_optimizer(path)
        return client

    async def create_sampling_client_async(self, model_path: str | None = None,
                                           base_model: str | None = None) -> SamplingClient:
        return self.create_sampling_client(model_path, base_model)

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return self.get_server_capabilities()


def _lora_config(rank: int, seed: int | None, train_mlp: bool, train_attn: bool,
                 train_unembed: bool) -> types.LoraConfig:
    if not (train_mlp or train_attn or train_unembed):
        raise ValueError("at least one of train_mlp, train_attn, train_unembed must be True")
    return types.LoraConfig(rank=rank, seed=seed, train_mlp=train_mlp, train_attn=train_attn,
                            train_unembed=train_unembed)


def _config_like(info: types.WeightsInfoResponse) -> types.LoraConfig:
    """The LoRA settings a checkpoint was trained with (rank 0 = full weights)."""
    return types.LoraConfig(rank=(info.lora_rank or 0) if info.is_lora else 0,
                            train_mlp=_default_true(info.train_mlp),
                            train_attn=_default_true(info.train_attn),
                            train_unembed=_default_true(info.train_unembed))


def _default_true(flag: bool | None) -> bool:
    return True if flag is None else flag


__all__ = ["CustomLossFnV1", "SamplingClient", "ServiceClient", "TrainingClient"]
