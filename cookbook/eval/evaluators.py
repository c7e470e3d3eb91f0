"""The two evaluator interfaces and their builder types."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from cookbook.client.abstract import SamplingClient, TrainingClient

Metrics: TypeAlias = dict[str, float]


class TrainingClientEvaluator(ABC):
    """Scores the model as it is now, through its training client (e.g. with `forward`).

    The loop calls it between steps; since a training client runs its calls in order, what it
    submits sees exactly the updates submitted before it, even while steps are in flight.
    """

    @abstractmethod
    async def __call__(self, training_client: TrainingClient) -> Metrics:
        """Metric name -> value (names carry their own prefix, e.g. `test/nll`)."""

    async def submit(self, training_client: TrainingClient) -> Awaitable[Metrics]:
        """Queue this evaluation's calls now; the awaitable it returns reads their results.

        A loop may submit its next steps before awaiting it: the calls queued here still see
        only the updates submitted before them. This default runs the whole evaluation here;
        an evaluator whose work is only queued calls overrides it (`ForwardEvaluator` does).
        """
        return resolved(await self(training_client))


class SamplingClientEvaluator(ABC):
    """Scores generations from a sampling snapshot of the current weights."""

    @abstractmethod
    async def __call__(self, sampling_client: SamplingClient) -> Metrics:
        """Metric name -> value (names carry their own prefix, e.g. `test/win_rate`)."""


def resolved(metrics: Metrics) -> asyncio.Future[Metrics]:
    """An awaitable already holding `metrics`."""
    future: asyncio.Future[Metrics] = asyncio.get_running_loop().create_future()
    future.set_result(metrics)
    return future


Evaluator: TypeAlias = TrainingClientEvaluator | SamplingClientEvaluator
TrainingClientEvaluatorBuilder: TypeAlias = Callable[[], TrainingClientEvaluator]
SamplingClientEvaluatorBuilder: TypeAlias = Callable[[], SamplingClientEvaluator]
EvaluatorBuilder: TypeAlias = TrainingClientEvaluatorBuilder | SamplingClientEvaluatorBuilder
