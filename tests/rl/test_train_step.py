"""The training step submits every substep before awaiting any result, and never sends the local mask.

A recording client stands in for the server here to observe the order of submissions and
awaits; the integration test trains through the real server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from cookbook.client.futures import APIFuture
from cookbook.client.types import AdamParams, Datum, ForwardBackwardOutput, OptimStepResponse, TensorData
from cookbook.rl.data_processing import trajectory_to_data
from cookbook.rl.train_step import split_into_minibatches, train_step

from .builders import trajectory, turn


class RecordedFuture(APIFuture[Any]):
    def __init__(self, events: list[str], name: str, value: Any):
        self.events, self.name, self.value = events, name, value

    def result(self, timeout: float | None = None) -> Any:
        raise AssertionError("train_step must not block")

    async def result_async(self, timeout: float | None = None) -> Any:
        self.events.append(f"await {self.name}")
        return self.value

    def done(self) -> bool:
        return True


class RecordingTrainingClient:
    """Duck-types the two TrainingClient calls train_step makes; logprobs = -(position + 1)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.sent: list[list[Datum]] = []

    async def forward_backward_async(
        self, data: list[Datum], loss_fn: str, loss_fn_config: dict[str, float] | None = None
    ) -> RecordedFuture:
        k = len(self.sent)
        self.sent.append(data)
        self.events.append(f"submit fwd_bwd {k} ({loss_fn}, {len(data)} datums)")
        outputs = [
            {
                "logprobs": TensorData.from_numpy(
                    -np.arange(1, len(d.loss_fn_inputs["target_tokens"].data) + 1, dtype=np.float32)
                )
            }
            for d in data
        ]
        return RecordedFuture(self.events, f"fwd_bwd {k}", ForwardBackwardOutput(loss_fn_outputs=outputs))

    async def optim_step_async(self, adam_params: AdamParams) -> RecordedFuture:
        k = len(self.sent) - 1
        self.events.append(f"submit optim {k} (lr {adam_params.learning_rate})")
        return RecordedFuture(
            self.events, f"optim {k}", OptimStepResponse(metrics={"grad_norm": float(k + 1)})
        )


def make_data(n: int) -> list[Datum]:
    return [
        d for i in range(n) for d in trajectory_to_data(trajectory(turn([1, 2], [10 + i] * (i + 1))), 1.0)
    ]


def test_all_substeps_are_submitted_before_any_result_is_awaited() -> None:
    client = RecordingTrainingClient()
    data = make_data(5)
    logprobs, metrics = asyncio.run(
        train_step(client, data, loss_fn="ppo", adam_params=AdamParams(learning_rate=0.5), num_substeps=2)
    )  # type: ignore[arg-type]
    assert client.events == [
        "submit fwd_bwd 0 (ppo, 2 datums)",
        "submit optim 0 (lr 0.5)",
        "submit fwd_bwd 1 (ppo, 3 datums)",
        "submit optim 1 (lr 0.5)",
        "await fwd_bwd 0",
        "await optim 0",
        "await fwd_bwd 1",
        "await optim 1",
    ]
    # Logprobs come back per datum, in the order of the data, one per target token.
    n_targets = [len(d.loss_fn_inputs["target_tokens"].data) for d in data]
    assert [lp.tolist() for lp in logprobs] == [[-float(t + 1) for t in range(n)] for n in n_targets]
    assert metrics == {"optim/grad_norm": 1.5}  # averaged over the two optimizer steps
    assert all(
        set(d.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"} for b in client.sent for d in b
    )


def test_split_into_minibatches() -> None:
    data = make_data(5)
    assert [len(b) for b in split_into_minibatches(data, 1)] == [5]
    assert [len(b) for b in split_into_minibatches(data, 2)] == [2, 3]
    assert [len(b) for b in split_into_minibatches(data, 8)] == [1, 1, 1, 1, 1]
    assert [d for b in split_into_minibatches(data, 3) for d in b] == data
    with pytest.raises(ValueError, match="num_substeps"):
        split_into_minibatches(data, 0)
