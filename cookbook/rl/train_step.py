"""One RL update, pipelined: every substep's forward_backward and optim_step are submitted before any is awaited.

A training client runs its calls strictly in submission order, so submitting everything first
is correct and keeps the server busy: it never waits for the client to read one result before
the next request arrives. With `num_substeps > 1` the batch is split into that many
minibatches with one optimizer step each; the later minibatches are then slightly off-policy,
which the clipped losses (ppo, cispo) are made for.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from cookbook.client.abstract import TrainingClient
from cookbook.client.types import AdamParams, Datum, LossFnType
from cookbook.rl.data_processing import remove_mask
from cookbook.rl.metrics import mean_of_dicts


def split_into_minibatches(data_D: Sequence[Datum], num_substeps: int) -> list[list[Datum]]:
    """`num_substeps` contiguous minibatches of (nearly) equal size; fewer if there are fewer datums."""
    if num_substeps < 1:
        raise ValueError(f"num_substeps must be at least 1, got {num_substeps}")
    bounds = np.linspace(0, len(data_D), min(num_substeps, len(data_D)) + 1).round().astype(int)
    return [list(data_D[lo:hi]) for lo, hi in itertools.pairwise(bounds) if hi > lo]


async def train_step(
    training_client: TrainingClient,
    data_D: Sequence[Datum],
    *,
    loss_fn: LossFnType,
    adam_params: AdamParams,
    loss_fn_config: dict[str, float] | None = None,
    num_substeps: int = 1,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Train on `data_D`; returns the trainer's logprobs of every Datum's targets and the optimizer metrics.

    The logprobs come from each minibatch's forward pass (before its own optimizer step), in
    the order of `data_D`. The server's optimizer metrics are averaged over substeps and
    prefixed `optim/`.
    """
    submitted = []
    for minibatch in split_into_minibatches([remove_mask(d) for d in data_D], num_substeps):
        fwd_bwd_future = await training_client.forward_backward_async(minibatch, loss_fn, loss_fn_config)
        optim_future = await training_client.optim_step_async(adam_params)
        submitted.append((fwd_bwd_future, optim_future))

    training_logprobs_D: list[np.ndarray] = []
    optim_metrics = []
    for fwd_bwd_future, optim_future in submitted:
        fwd_bwd = await fwd_bwd_future
        training_logprobs_D += [output["logprobs"].to_numpy() for output in fwd_bwd.loss_fn_outputs]
        optim_metrics.append((await optim_future).metrics or {})
    if len(training_logprobs_D) != len(data_D):
        raise ValueError(
            f"the server returned {len(training_logprobs_D)} logprob outputs for {len(data_D)} datums"
        )
    return training_logprobs_D, {f"optim/{k}": v for k, v in mean_of_dicts(optim_metrics).items()}
