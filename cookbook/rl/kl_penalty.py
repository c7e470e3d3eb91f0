"""A KL penalty that keeps the policy near a reference policy (usually the SFT checkpoint).

On every sampled (action) token t the log-ratio d_t = log q(t) - log ref(t) is a one-sample
estimate of the per-token KL(q || ref), where q is the policy that sampled it. Two ways to turn
it into a penalty, chosen by `kl_penalty_mode`:

- "sequence" (InstructGPT / TRL style): the trajectory's reward becomes
  r = r_theta - coef * sum_t d_t, i.e. the reward minus a sample estimate of the sequence KL;
  advantages are then group-centred from these penalised rewards.
- "token" (Tinker's cookbook): advantages get a per-token term
  A_t += coef * (mean(d) - d_t), where mean(d) is over every action token of the batch: tokens
  more likely under the policy than under the reference are pushed down, the others up.

The reference logprobs are scored on the exact token sequences that are trained (token-in/token-out):
by one `forward` call over the whole batch when the reference is a training client holding its
weights, else by one `compute_logprobs` request per Datum on its sampling client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.client.types import Datum, TensorData
from cookbook.rl.data_processing import MASK_KEY, DatumOwner, full_sequence, loss_input
from cookbook.utils.forward_pieces import forward_outputs

KLPenaltyMode = Literal["sequence", "token"]
KL_PENALTY_MODES: tuple[str, ...] = get_args(KLPenaltyMode)

ReferencePolicy = SamplingClient | TrainingClient
"""The frozen reference: a training client is scored by `forward`, a sampling client by `compute_logprobs`."""


async def compute_reference_logprobs(reference: ReferencePolicy, data_D: Sequence[Datum]) -> list[np.ndarray]:
    """The reference policy's logprob of every target token of every Datum."""
    if isinstance(reference, TrainingClient):
        return await _forward_logprobs(reference, data_D)
    return await _sampler_logprobs(reference, data_D)


async def _forward_logprobs(reference: TrainingClient, data_D: Sequence[Datum]) -> list[np.ndarray]:
    """One `forward` pass over the whole batch (the action mask as weights: the reported loss is then the
    NLL of the actions; only the logprobs are read)."""
    scored_D = [
        Datum(
            model_input=datum.model_input,
            loss_fn_inputs={
                "target_tokens": datum.loss_fn_inputs["target_tokens"],
                "weights": TensorData.from_numpy(loss_input(datum, MASK_KEY).astype(np.float32)),
            },
        )
        for datum in data_D
    ]
    outputs = await forward_outputs(reference, scored_D, "cross_entropy")
    return [out["logprobs"].to_numpy().astype(np.float64) for out in outputs]


async def _sampler_logprobs(reference: SamplingClient, data_D: Sequence[Datum]) -> list[np.ndarray]:
    """One `compute_logprobs` request per Datum, all in flight together."""
    prompt_logprobs_D = await asyncio.gather(
        *(reference.compute_logprobs_async(full_sequence(datum)) for datum in data_D)
    )
    out: list[np.ndarray] = []
    for d, (datum, prompt_logprobs) in enumerate(zip(data_D, prompt_logprobs_D, strict=True)):
        # Entry 0 scores the first token, which has no prefix (None); entry i+1 scores target i.
        target_logprobs = prompt_logprobs[1:]
        n_targets = len(datum.loss_fn_inputs["target_tokens"].data)
        if len(target_logprobs) != n_targets or any(lp is None for lp in target_logprobs):
            raise ValueError(
                f"datum {d}: the reference returned {len(prompt_logprobs)} prompt logprobs "
                f"(with None after the first?) for a sequence of {n_targets + 1} tokens"
            )
        out.append(np.asarray(target_logprobs, dtype=np.float64))
    return out


def policy_ref_log_ratios(
    data_D: Sequence[Datum], reference_logprobs_D: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """d_t = log q - log ref on action tokens (q = the sampler's logprobs), 0 on observation tokens."""
    if len(data_D) != len(reference_logprobs_D):
        raise ValueError(f"{len(data_D)} datums but {len(reference_logprobs_D)} reference logprob arrays")
    ratios_D = []
    for datum, ref_logprobs_T in zip(data_D, reference_logprobs_D, strict=True):
        mask_T = loss_input(datum, MASK_KEY).astype(np.float64)
        sampler_logprobs_T = loss_input(datum, "logprobs").astype(np.float64)
        ratios_D.append(mask_T * (sampler_logprobs_T - ref_logprobs_T))
    return ratios_D


def mean_over_actions(values_D: Sequence[np.ndarray], data_D: Sequence[Datum]) -> float:
    """The mean of per-token values over every action token of the batch (NaN when there is none)."""
    masks_D = [loss_input(datum, MASK_KEY) for datum in data_D]
    n_actions = float(sum(mask.sum() for mask in masks_D))
    if n_actions == 0:
        return float("nan")
    return float(
        sum((values * mask).sum() for values, mask in zip(values_D, masks_D, strict=True)) / n_actions
    )


def sequence_kl_estimates(
    log_ratios_D: Sequence[np.ndarray], owners_D: Sequence[DatumOwner], group_sizes_P: Sequence[int]
) -> list[np.ndarray]:
    """r_KL per trajectory: the sum of d_t over all its action tokens (`[p][g]`, like the rewards)."""
    kl_P = [np.zeros(size, dtype=np.float64) for size in group_sizes_P]
    for ratios_T, owner in zip(log_ratios_D, owners_D, strict=True):
        kl_P[owner.group_idx][owner.traj_idx] += float(ratios_T.sum())
    return kl_P


def token_kl_advantage_terms(
    log_ratios_D: Sequence[np.ndarray], data_D: Sequence[Datum], kl_penalty_coef: float
) -> list[np.ndarray]:
    """coef * (mean(d) - d_t) on action tokens, 0 elsewhere: what the "token" mode adds to advantages."""
    mean_ratio = mean_over_actions(log_ratios_D, data_D)
    return [
        kl_penalty_coef * loss_input(datum, MASK_KEY) * (mean_ratio - ratios_T)
        for ratios_T, datum in zip(log_ratios_D, data_D, strict=True)
    ]
