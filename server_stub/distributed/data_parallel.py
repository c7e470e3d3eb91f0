"""One request's datums over several ranks: who takes which rows, the pass each rank runs, and
how replicated gradients are summed.

Losses are token sums, so each rank's share adds up to the one-rank result: FSDP2's reduce-scatter
averages, so sharded ranks backpropagate their loss times the rank count; replicated LoRA gradients
are all-reduced with SUM at optim_step.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.training.forward_backward import datum_logprobs, target_logprobs
from server_stub.training.losses import total_loss

if TYPE_CHECKING:
    import torch

    from server_stub.training.batch import TrainBatch


def rows_by_tokens(lengths: Sequence[int], world: int) -> list[list[int]]:
    """Each rank's rows: longest first, each to the rank with the fewest tokens so far (ties: lowest rank)."""
    loads = [(0, rank) for rank in range(world)]
    shares: list[list[int]] = [[] for _ in range(world)]
    for row in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        tokens, rank = heapq.heappop(loads)
        shares[rank].append(row)
        heapq.heappush(loads, (tokens + lengths[row], rank))
    return [sorted(share) for share in shares]


@dataclass
class ShareResult:
    """One rank's part of a pass: its rows' logprobs (by row in the request), loss, and any refusal."""

    loss: float
    logprobs: dict[int, types.TensorData]
    refusal: str | None


def lockstep_pass(
    module: torch.nn.Module,
    chunks: Sequence[tuple[list[int], TrainBatch]],
    loss_fn: str,
    backward: bool,
    passes: int,
    gradient_scale: float = 1.0,
) -> ShareResult:
    """Run `passes` forward (and backward) passes: this rank's chunks, then stand-ins.

    Under FSDP2 each forward and backward is a collective, so every rank runs the same number of
    them: a rank with fewer chunks runs one-token stand-ins, and a chunk whose loss is not finite
    still runs a (zero) backward. The caller takes the gradients back if any rank refused.
    """
    import torch

    loss_total, logprobs, refusal = 0.0, {}, None
    device = next(module.parameters()).device
    for index in range(passes):
        # Not inference_mode: FSDP2 would keep its gathered weights as inference tensors it cannot update.
        with torch.enable_grad() if backward else torch.no_grad():
            if index < len(chunks):
                rows, batch = chunks[index]
                lp = target_logprobs(module, batch)
                loss = total_loss(loss_fn, lp, batch)
                value = float(loss.detach())
                if math.isfinite(value):
                    loss_total += value
                    logprobs.update(datum_logprobs(rows, batch, lp))
                else:
                    refusal = f"the {loss_fn} loss is not finite ({value})"
                    loss = lp.sum() * 0.0  # keeps the collectives in step; the gradients are taken back
            else:
                stand_in = torch.zeros((1, 1), dtype=torch.long, device=device)
                loss = module(input_ids=stand_in, use_cache=False).logits.sum() * 0.0
        if backward:
            (loss * gradient_scale if gradient_scale != 1.0 else loss).backward()
    return ShareResult(loss_total, logprobs, refusal)


def sum_replica_gradients(params: dict[str, torch.nn.Parameter], device: torch.device) -> None:
    """All-reduce (SUM) the gradients of replicated parameters; a parameter no rank touched keeps None."""
    import torch
    import torch.distributed as dist

    names = list(params)
    touched = torch.tensor([params[n].grad is not None for n in names], dtype=torch.int32, device=device)
    dist.all_reduce(touched, op=dist.ReduceOp.MAX)
    stepped = [name for name, flag in zip(names, touched.tolist(), strict=True) if flag]
    if not stepped:
        return
    grads = []
    for name in stepped:
        param = params[name]
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()
