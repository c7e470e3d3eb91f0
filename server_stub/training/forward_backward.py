"""One batched forward (and optionally backward) pass: logprobs of the targets, the loss, its gradient."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.logprobs import gather_logprobs
from server_stub.training.losses import total_loss

if TYPE_CHECKING:
    import torch

    from server_stub.training.batch import TrainBatch


@dataclass
class PassResult:
    loss: float
    logprobs: list[types.TensorData]  # one per datum, shaped like its target_tokens


def target_logprobs(module: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    """[B, L, K] fp32 logprobs of every target under `module` (one forward for the whole batch)."""
    logits = module(input_ids=batch.input_ids, use_cache=False).logits
    return gather_logprobs(logits, batch.targets)


def run_pass(module: torch.nn.Module, batch: TrainBatch, loss_fn: str, backward: bool) -> PassResult:
    """Forward the batch; with `backward`, add the loss gradient to the parameters' `.grad`.

    A non-finite loss (e.g. an importance ratio that overflows) is refused before backward, so
    accumulated gradients are never poisoned by one bad request.
    """
    import torch

    with torch.enable_grad() if backward else torch.inference_mode():
        lp = target_logprobs(module, batch)
        loss = total_loss(loss_fn, lp, batch)
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise UserError(f"the {loss_fn} loss is not finite ({loss_value}); check logprobs/advantages/weights "
                        "(no gradient was accumulated)", field="data")
    if backward:
        loss.backward()
    lp_cpu = lp.detach().float().cpu().numpy()
    outputs = []
    for row, shape in enumerate(batch.target_shapes):
        values = lp_cpu[row, : shape[0], : (shape[1] if len(shape) == 2 else 1)].reshape(shape)
        outputs.append(types.TensorData(data=values.reshape(-1).tolist(), dtype="float32", shape=list(shape)))
    return PassResult(loss=loss_value, logprobs=outputs)
