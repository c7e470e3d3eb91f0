"""An evaluation that is one `forward` pass over a fixed set of Datums, scored from its outputs.

The pass is sent as requests of a bounded token count (`cookbook.utils.forward_pieces`), so a test set
of long sequences never exceeds the server's `max_tokens_per_request`.

Its `submit` only queues the forward and hands back the reading of its result, so a training
loop can keep the server busy with its next steps while the evaluation is computed and scored.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Generator, Sequence
from typing import Any

from cookbook.client.abstract import TrainingClient
from cookbook.client.futures import APIFuture
from cookbook.client.types import Datum, ForwardBackwardOutput, LossFnOutput, LossFnType
from cookbook.eval.evaluators import Metrics, TrainingClientEvaluator
from cookbook.utils.forward_pieces import FORWARD_TOKENS_PER_REQUEST, read_outputs, submit_forward


class ForwardEvaluator(TrainingClientEvaluator):
    """Scores the model by a `forward(data, loss_fn)` pass; subclasses turn its outputs into metrics."""

    loss_fn: LossFnType = "cross_entropy"
    max_tokens_per_request: int = FORWARD_TOKENS_PER_REQUEST

    def __init__(self, data: Sequence[Datum]):
        self.data = list(data)  # what the forward scores, the same every time

    @abstractmethod
    def metrics_from(self, outputs: list[LossFnOutput]) -> Metrics:
        """The metrics from the forward's outputs (one per Datum, in order)."""

    async def submit(self, training_client: TrainingClient) -> Awaitable[Metrics]:
        return _Reading(
            self, await submit_forward(training_client, self.data, self.loss_fn, self.max_tokens_per_request)
        )

    async def __call__(self, training_client: TrainingClient) -> Metrics:
        return await (await self.submit(training_client))

    async def _read(self, futures: list[APIFuture[ForwardBackwardOutput]]) -> Metrics:
        return self.metrics_from(await read_outputs(futures, len(self.data)))


class _Reading:
    """The reading of a queued forward's result, run where the loop awaits it (after its next
    submissions); its coroutine exists only once awaited, so a loop that fails first leaves none behind."""

    def __init__(self, evaluator: ForwardEvaluator, futures: list[APIFuture[ForwardBackwardOutput]]):
        self._evaluator = evaluator
        self._futures = futures

    def __await__(self) -> Generator[Any, None, Metrics]:
        return self._evaluator._read(self._futures).__await__()
