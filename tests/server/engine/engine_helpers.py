"""Builders and probes shared by the engine tests (a plain module: conftest is for fixtures)."""

from __future__ import annotations

import torch

from cookbook.client import types
from server_stub.torch_engine import TorchEngine

TINY = "tiny-llama"


def sft_datum(tokens: list[int], weights: list[float] | None = None) -> types.Datum:
    """Next-token datum over `tokens`: input tokens[:-1], targets tokens[1:]."""
    weights = [1.0] * (len(tokens) - 1) if weights is None else weights
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
    )


def rl_datum(
    tokens: list[int], logprobs: list[float], advantages: list[float], **extra: list[float]
) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "logprobs": logprobs, "advantages": advantages, **extra},
    )


def fwd(
    data: list[types.Datum], loss_fn: str = "cross_entropy", config: dict[str, float] | None = None
) -> types.ForwardBackwardInput:
    return types.ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=config)


def forward_backward_counting_head(
    engine: TorchEngine, data: list[types.Datum], loss_fn: str, backward: bool
) -> tuple[types.ForwardBackwardOutput, list[int]]:
    """Model "m"'s forward_backward, and the positions (over every row) of each output-layer product it ran."""
    tokens: list[int] = []
    head = engine._models["m"].module().get_output_embeddings()
    handle = head.register_forward_hook(lambda _, __, out: tokens.append(out[..., 0].numel()))
    try:
        return engine.forward_backward("m", fwd(data, loss_fn), backward=backward), tokens
    finally:
        handle.remove()


def grads_of(engine: TorchEngine, model_id: str) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in engine._models[model_id].params.items()}


def weights_of(engine: TorchEngine, model_id: str) -> dict[str, torch.Tensor]:
    return engine._models[model_id].snapshot()


def sample_request(prompt: list[int], num_samples: int = 1, **params: object) -> types.SampleRequest:
    return types.SampleRequest(
        prompt=types.ModelInput.from_ints(prompt),
        num_samples=num_samples,
        sampling_params=types.SamplingParams(**params),
    )


def saved_bytes_per_token(module: torch.nn.Module, tokens: torch.Tensor) -> float:
    """Bytes of the tensors autograd saves for backward in one forward of `tokens` (weights left out)."""
    saved: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module.get_decoder()(input_ids=tokens, use_cache=False)
    return sum(saved.values()) / tokens.numel()
