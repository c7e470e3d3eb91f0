"""The client half of `forward_backward_custom`: a user loss on logprobs, as CE weights.

The server only knows its built-in losses. For any differentiable loss L of the per-token
logprobs, cross_entropy with weights `w = -dL/dlogp` has gradient `sum(-w * dlogp/dθ) =
dL/dθ` with respect to the model, so one extra cross_entropy forward_backward applies L's
gradient. torch is imported here, lazily: only users of custom losses need it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from cookbook.client import types
from cookbook.client.futures import APIFuture

if TYPE_CHECKING:
    import torch

    from cookbook.client.abstract import CustomLossFnV1, TrainingClient


def _target_shape(datum: types.Datum, index: int) -> list[int]:
    targets = datum.loss_fn_inputs.get("target_tokens")
    if targets is None:
        raise ValueError(f"data[{index}] has no target_tokens: a custom loss needs them")
    return list(targets.shape) if targets.shape is not None else [len(targets.data)]


def logprob_leaves(
    data: list[types.Datum],
    forward_output: types.ForwardBackwardOutput,
) -> list[torch.Tensor]:
    """Each datum's target logprobs as a leaf tensor that records gradients."""
    import torch

    outputs = forward_output.loss_fn_outputs
    if len(outputs) != len(data):
        raise ValueError(f"the forward pass returned {len(outputs)} outputs for {len(data)} datums")
    leaves = []
    for i, (datum, output) in enumerate(zip(data, outputs, strict=True)):
        if "logprobs" not in output:
            raise ValueError(f"the forward output of data[{i}] has no logprobs")
        values = torch.as_tensor(output["logprobs"].to_numpy(), dtype=torch.float32)
        shape = _target_shape(datum, i)
        if values.numel() != _numel(shape):
            raise ValueError(f"data[{i}]: {values.numel()} logprobs for target_tokens of shape {shape}")
        leaves.append(values.reshape(shape).clone().requires_grad_(True))
    return leaves


def _numel(shape: list[int]) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


def loss_gradients(
    data: list[types.Datum],
    logprobs: list[torch.Tensor],
    loss_fn: CustomLossFnV1,
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Run the user's loss and backpropagate it to the logprobs: (dL/dlogp per datum, metrics)."""
    import torch

    loss, metrics = loss_fn(data, logprobs)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("a custom loss must return a scalar torch tensor as its loss")
    if not loss.requires_grad:
        raise ValueError(
            "the custom loss does not depend on the logprobs it was given (its result has no gradient)"
        )
    loss.reshape(()).backward()
    grads = [lp.grad if lp.grad is not None else torch.zeros_like(lp) for lp in logprobs]
    return grads, {name: _as_float(value) for name, value in metrics.items()}


def _as_float(value: Any) -> float:
    return float(value.item()) if hasattr(value, "item") else float(value)


def weighted_data(data: list[types.Datum], grads: list[torch.Tensor]) -> list[types.Datum]:
    """The datums for the cross_entropy pass: same tokens, weights `-dL/dlogp`."""
    return [
        types.Datum(
            model_input=datum.model_input,
            loss_fn_inputs={
                "target_tokens": datum.loss_fn_inputs["target_tokens"],
                "weights": (-grad).detach(),
            },
        )
        for datum, grad in zip(data, grads, strict=True)
    ]


async def run_custom_loss(
    training_client: TrainingClient,
    data: list[types.Datum],
    forward_output: types.ForwardBackwardOutput,
    loss_fn: CustomLossFnV1,
) -> APIFuture[types.ForwardBackwardOutput]:
    """Given the forward pass's logprobs, apply `loss_fn`'s gradient to the model.

    The returned future's metrics are the server's (`name:reduction` keys) plus the user's.
    """
    logprobs = logprob_leaves(data, forward_output)
    # The user's loss is arbitrary code: a worker thread runs it, so no event loop waits on it.
    grads, user_metrics = await asyncio.to_thread(loss_gradients, data, logprobs, loss_fn)
    future = await training_client.forward_backward_async(weighted_data(data, grads), "cross_entropy")

    def merge(output: types.ForwardBackwardOutput) -> types.ForwardBackwardOutput:
        return output.model_copy(update={"metrics": {**output.metrics, **user_metrics}})

    return future.map(merge)
