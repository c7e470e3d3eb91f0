"""An evaluation that is one `forward` call over a fixed set of Datums, scored from its outputs.

Its `submit` only queues the forward and hands back the reading of its result, so a training
loop can keep the server busy with its next steps while the evaluation is computed and scored.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

from cookbook.client.abstract import TrainingClient
from cookbook.client.futures import APIFuture
from cookbook.client.types import Datum, ForwardBackwardOutput, LossFnType
from cookbook.eval.evaluators import Metrics, TrainingClientEvaluator


class ForwardEvaluator(TrainingClientEvaluator):
    """Scores the model by one `forward(data, loss_fn)`; subclasses turn its outputs into metrics."""

    loss_fn: LossFnType = "cross_entropy"

    def __init__(self, data: Sequence[Datum]):
        self.data = list(data)  # what the forward scores, the same every time

    @abstractmethod
    def metrics_from(self, output: ForwardBackwardOutput) -> Metrics:
        """The metrics from the forward's outputs (one per Datum, in order)."""

    async def submit(self, training_client: TrainingClient) -> Awaitable[Metrics]:
        return _Reading(self, await training_client.forward_async(self.data, self.loss_fn))

    async def __call__(self, training_client: TrainingClient) -> Metrics:
        return await (await self.submit(training_client))

    async def _read(self, future: APIFuture[ForwardBackwardOutput]) -> Metrics:
        output = await future
        if len(output.loss_fn_outputs) != len(self.data):
            raise ValueError(
                f"forward returned {len(output.loss_fn_outputs)} outputs for {len(self.data)} datums"
            )
        return self.metrics_from(output)


class _Reading:
    """The reading of a queued forward's result, run where the loop awaits it (after its next
    submissions); its coroutine exists only once awaited, so a loop that fails first leaves none behind."""

    def __init__(self, evaluator: ForwardEvaluator, future: APIFuture[ForwardBackwardOutput]):
        self._evaluator = evaluator
        self._future = future

    def __await__(self) -> Generator[Any, None, Metrics]:
        return self._evaluator._read(self._future).__await__()
