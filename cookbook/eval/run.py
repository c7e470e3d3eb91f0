"""Build a config's evaluators and run them all at one point of training."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.eval.evaluators import (
    Evaluator,
    EvaluatorBuilder,
    Metrics,
    SamplingClientEvaluator,
    TrainingClientEvaluator,
)


def build_evaluators(builders: Sequence[EvaluatorBuilder]) -> list[Evaluator]:
    """Call each builder; a builder that returns something else is named in the error."""
    evaluators: list[Evaluator] = []
    for i, builder in enumerate(builders):
        evaluator = builder()
        if not isinstance(evaluator, TrainingClientEvaluator | SamplingClientEvaluator):
            raise TypeError(
                f"evaluator_builders[{i}] ({builder!r}) returned a {type(evaluator).__name__}, "
                "not a TrainingClientEvaluator or SamplingClientEvaluator"
            )
        evaluators.append(evaluator)
    return evaluators


async def run_evaluators(
    evaluators: Sequence[Evaluator],
    training_client: TrainingClient,
    sampling_client: SamplingClient | None = None,
) -> Metrics:
    """Run every evaluator on the model's current weights and merge their metrics.

    All of them start together. Sampling evaluators share one snapshot: `sampling_client` when the
    caller holds one of the current weights, else one taken only if a sampling evaluator exists.
    Two evaluators reporting the same metric name is an error, not a silent overwrite.
    """
    trainers = [ev for ev in evaluators if isinstance(ev, TrainingClientEvaluator)]
    samplers = [ev for ev in evaluators if isinstance(ev, SamplingClientEvaluator)]
    jobs: list[Awaitable[Metrics]] = []
    if samplers:
        if sampling_client is None:
            sampling_client = await training_client.save_weights_and_get_sampling_client_async()
        jobs.extend(ev(sampling_client) for ev in samplers)
    jobs.extend(ev(training_client) for ev in trainers)
    merged: Metrics = {}
    for metrics in await asyncio.gather(*jobs):
        clash = sorted(set(merged) & set(metrics))
        if clash:
            raise ValueError(f"two evaluators report the same metric(s) {clash}; give them different names")
        merged.update(metrics)
    return merged
