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


class PendingEvaluation:
    """Evaluations already queued on the server; `metrics()` waits for them and merges their metrics."""

    def __init__(self, parts: Sequence[Awaitable[Metrics]]):
        self._parts = list(parts)

    async def metrics(self) -> Metrics:
        """Every evaluator's metrics; two evaluators reporting the same name is an error, not an overwrite."""
        merged: Metrics = {}
        for metrics in await asyncio.gather(*self._parts):
            clash = sorted(set(merged) & set(metrics))
            if clash:
                raise ValueError(
                    f"two evaluators report the same metric(s) {clash}; give them different names"
                )
            merged.update(metrics)
        return merged


async def submit_evaluators(
    evaluators: Sequence[Evaluator],
    training_client: TrainingClient,
    sampling_client: SamplingClient | None = None,
) -> PendingEvaluation:
    """Queue every evaluator's work on the model's weights as they are now; read it later.

    Sampling evaluators share one snapshot: `sampling_client` when the caller holds one of the
    current weights, else one taken only if a sampling evaluator exists (they then sample from it
    whatever the training client does next). Training-client evaluators start together;
    this returns once each has queued its calls, so the loop may submit its next steps before
    reading the metrics, which still describe these weights.
    """
    trainers = [ev for ev in evaluators if isinstance(ev, TrainingClientEvaluator)]
    samplers = [ev for ev in evaluators if isinstance(ev, SamplingClientEvaluator)]
    parts: list[Awaitable[Metrics]] = []
    if samplers:
        if sampling_client is None:
            sampling_client = await training_client.save_weights_and_get_sampling_client_async()
        parts.extend(asyncio.ensure_future(ev(sampling_client)) for ev in samplers)
    try:
        parts.extend(await asyncio.gather(*(ev.submit(training_client) for ev in trainers)))
    except BaseException:
        for part in parts:  # the sampling evaluations already started have no reader now
            if isinstance(part, asyncio.Future):
                part.cancel()
        raise
    return PendingEvaluation(parts)


async def run_evaluators(
    evaluators: Sequence[Evaluator],
    training_client: TrainingClient,
    sampling_client: SamplingClient | None = None,
) -> Metrics:
    """Run every evaluator on the model's current weights and merge their metrics (see `submit_evaluators`)."""
    return await (await submit_evaluators(evaluators, training_client, sampling_client)).metrics()
