"""The DPO objective on summed sequence logprobs, and the reference logprobs it compares against.

For a pair (chosen c, rejected r), with s = sum over trained tokens of w_t * logprob_t under the
policy and s_ref the same under the frozen reference:

    delta = (s_c - s_ref_c) - (s_r - s_ref_r),     loss = mean over pairs of -log sigmoid(beta * delta)

The implicit rewards are beta * (s - s_ref). Data come as [chosen_0, rejected_0, chosen_1, ...].
Optionally the chosen answers' per-token NLL is added (`nll_coef`, see `make_dpo_loss_fn`).
torch is imported inside the functions that need it (the client package imports without it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cookbook.client.abstract import CustomLossFnV1, SamplingClient, TrainingClient
from cookbook.client.types import Datum

if TYPE_CHECKING:
    import torch

DPO_METRICS: tuple[str, ...] = (
    "dpo_loss",
    "accuracy",
    "margin",
    "chosen_reward",
    "rejected_reward",
    "chosen_nll",
)
# Log-ratio differences this small are ties: the policy's forward pass and a sampler reference
# compute the same weights' logprobs along different code paths, which differ by ~1e-6 nats.
TIE_TOLERANCE = 1e-4


def check_pairs(data: Sequence[Datum]) -> None:
    if not data or len(data) % 2:
        raise ValueError(
            f"DPO needs [chosen, rejected] pairs: an even, non-zero number of datums, got {len(data)}"
        )


def dpo_loss_and_metrics(
    policy_sums: torch.Tensor,
    reference_sums: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean DPO loss over pairs (differentiable in `policy_sums`) and its metrics.

    `accuracy` is the fraction of pairs whose chosen log-ratio beats the rejected one, a tie
    (within TIE_TOLERANCE, e.g. every pair before the first update) counting one half.
    """
    import torch

    if policy_sums.shape != reference_sums.shape or policy_sums.ndim != 1 or policy_sums.numel() % 2:
        raise ValueError(
            f"policy and reference sums must be 1-D of one even length, got {tuple(policy_sums.shape)} "
            f"and {tuple(reference_sums.shape)}"
        )
    log_ratio = policy_sums - reference_sums.to(policy_sums.dtype)
    chosen, rejected = log_ratio[0::2], log_ratio[1::2]
    delta = chosen - rejected
    loss = -torch.nn.functional.logsigmoid(beta * delta).mean()
    with torch.no_grad():
        metrics = {
            "dpo_loss": loss.item(),
            "accuracy": float(
                ((delta > TIE_TOLERANCE).double() + 0.5 * (delta.abs() <= TIE_TOLERANCE).double()).mean()
            ),
            "margin": float((beta * delta).mean()),
            "chosen_reward": float((beta * chosen).mean()),
            "rejected_reward": float((beta * rejected).mean()),
        }
    return loss, metrics


def weighted_sums(logprobs: Sequence[torch.Tensor], data: Sequence[Datum]) -> torch.Tensor:
    """s per datum: sum of weight * logprob over its target positions (differentiable)."""
    import torch

    sums = []
    for i, (lp, datum) in enumerate(zip(logprobs, data, strict=True)):
        weights = torch.as_tensor(datum.loss_fn_inputs["weights"].to_numpy(), dtype=lp.dtype)
        if weights.shape != lp.shape:
            raise ValueError(
                f"data[{i}]: weights shape {tuple(weights.shape)} != logprobs shape {tuple(lp.shape)}"
            )
        sums.append((weights * lp).sum())
    return torch.stack(sums)


def chosen_nll(policy_sums: torch.Tensor, data: Sequence[Datum]) -> torch.Tensor:
    """Mean over pairs of the chosen completion's per-token NLL (differentiable)."""
    import torch

    totals = torch.tensor(
        [float(d.loss_fn_inputs["weights"].to_numpy().sum()) for d in data[0::2]], dtype=policy_sums.dtype
    )
    return -(policy_sums[0::2] / totals).mean()


def make_dpo_loss_fn(reference_sums: Sequence[float], beta: float, nll_coef: float = 0.0) -> CustomLossFnV1:
    """The custom loss for `forward_backward_custom` on one batch whose reference sums are known.

    `nll_coef > 0` adds that multiple of the chosen completions' per-token NLL (the "RPO"
    regulariser): plain DPO only separates chosen from rejected and can lower the likelihood of
    both, drifting the policy off the data; the NLL term holds the chosen answers up.
    The metric `chosen_nll` is reported either way.
    """

    def loss_fn(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        import torch

        check_pairs(data)
        if len(reference_sums) != len(data):
            raise ValueError(f"{len(reference_sums)} reference sums for {len(data)} datums")
        reference = torch.tensor(list(reference_sums), dtype=torch.float64)
        policy = weighted_sums(logprobs, data).double()
        loss, metrics = dpo_loss_and_metrics(policy, reference, beta)
        nll = chosen_nll(policy, data)
        metrics["chosen_nll"] = nll.item()
        return (loss + nll_coef * nll if nll_coef else loss), metrics

    return loss_fn


def _weighted_sum(target_logprobs: Sequence[float] | np.ndarray, datum: Datum) -> float:
    weights = datum.loss_fn_inputs["weights"].to_numpy().astype(np.float64)
    values = np.asarray(target_logprobs, dtype=np.float64)
    if values.shape != weights.shape:
        raise ValueError(f"the reference scored {values.size} targets for {weights.size} weights")
    return float(np.dot(weights, values))


async def reference_sums(reference: SamplingClient | TrainingClient, data: Sequence[Datum]) -> list[float]:
    """s_ref of every datum under the frozen reference.

    A training client (the DPO loop's reference) scores the whole batch in one `forward` call.
    A sampling client scores each datum with `compute_logprobs`, all requests at once: the full
    sequence is the model input plus its last target, whose prompt logprobs from position 1 on
    are the logprobs of the targets.
    """
    if isinstance(reference, TrainingClient):
        output = await (await reference.forward_async(list(data), "cross_entropy"))
        return [
            _weighted_sum(out["logprobs"].to_numpy(), datum)
            for out, datum in zip(output.loss_fn_outputs, data, strict=True)
        ]

    async def one(datum: Datum) -> float:
        targets = datum.loss_fn_inputs["target_tokens"].to_numpy()
        sequence = datum.model_input.append_int(int(targets[-1]))
        prompt_logprobs = await reference.compute_logprobs_async(sequence)
        return _weighted_sum(prompt_logprobs[1:], datum)  # the first prompt token has no logprob

    return list(await asyncio.gather(*(one(d) for d in data)))
