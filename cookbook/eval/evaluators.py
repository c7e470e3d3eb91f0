"""The two evaluator interfaces and their builder types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
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


class SamplingClientEvaluator(ABC):
    """Scores generations from a sampling snapshot of the current weights."""

    @abstractmethod
    async def __call__(self, sampling_client: SamplingClient) -> Metrics:
        """Metric name -> value (names carry their own prefix, e.g. `test/win_rate`)."""


Evaluator: TypeAlias = TrainingClientEvaluator | SamplingClientEvaluator
TrainingClientEvaluatorBuilder: TypeAlias = Callable[[], TrainingClientEvaluator]
SamplingClientEvaluatorBuilder: TypeAlias = Callable[[], SamplingClientEvaluator]
EvaluatorBuilder: TypeAlias = TrainingClientEvaluatorBuilder | SamplingClientEvaluatorBuilder
