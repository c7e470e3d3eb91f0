"""Evaluator plumbing: building them from a config, running them together, the NLL evaluator's math."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.futures import ResolvedFuture
from cookbook.eval import (
    Metrics,
    SamplingClientEvaluator,
    TrainingClientEvaluator,
    build_evaluators,
    run_evaluators,
)
from cookbook.supervised.nll_evaluator import NLLEvaluator


class SnapshotCounter:
    """Only the one call run_evaluators makes on a training client: taking a sampling snapshot."""

    def __init__(self) -> None:
        self.snapshots = 0

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> Any:
        self.snapshots += 1
        return f"snapshot-{self.snapshots}"


class Constant(TrainingClientEvaluator):
    def __init__(self, name: str, value: float):
        self.name, self.value = name, value

    async def __call__(self, training_client: Any) -> Metrics:
        return {self.name: self.value}


class SeenSnapshot(SamplingClientEvaluator):
    def __init__(self, name: str):
        self.name = name

    async def __call__(self, sampling_client: Any) -> Metrics:
        return {self.name: float(sampling_client.split("-")[1])}


def test_build_evaluators_names_a_builder_that_returns_something_else() -> None:
    assert len(build_evaluators([lambda: Constant("a", 1.0)])) == 1
    with pytest.raises(TypeError, match=r"evaluator_builders\[1\].*returned a dict"):
        build_evaluators([lambda: Constant("a", 1.0), lambda: {"a": 1.0}])


def test_sampling_evaluators_share_one_snapshot_and_metrics_merge() -> None:
    client = SnapshotCounter()
    evaluators = [Constant("test/nll", 0.5), SeenSnapshot("s1"), SeenSnapshot("s2")]
    metrics = asyncio.run(run_evaluators(evaluators, client))  # type: ignore[arg-type]
    assert metrics == {"test/nll": 0.5, "s1": 1.0, "s2": 1.0}
    assert client.snapshots == 1
    assert asyncio.run(run_evaluators([Constant("x", 1.0)], client)) == {"x": 1.0}  # type: ignore[arg-type]
    assert client.snapshots == 1  # no sampling evaluator, no snapshot


def test_two_evaluators_reporting_one_name_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"same metric.*test/nll"):
        asyncio.run(run_evaluators([Constant("test/nll", 1.0), Constant("test/nll", 2.0)], SnapshotCounter()))  # type: ignore[arg-type]


class ForwardOnly:
    """A training client whose forward returns fixed per-token logprobs (the server's side), the next
    ones in order for each datum it is sent."""

    def __init__(self, logprobs: list[list[float]]):
        self.logprobs = logprobs
        self.calls: list[tuple[int, str]] = []

    async def forward_async(self, data: list[types.Datum], loss_fn: str) -> ResolvedFuture[Any]:
        done = sum(count for count, _ in self.calls)
        self.calls.append((len(data), loss_fn))
        outputs = [
            {"logprobs": types.TensorData.from_numpy(np.array(lp, dtype=np.float32))}
            for lp in self.logprobs[done : done + len(data)]
        ]
        return ResolvedFuture(types.ForwardBackwardOutput(loss_fn_outputs=outputs))


def datum(weights: list[float]) -> types.Datum:
    n = len(weights)
    return types.Datum(
        model_input=types.ModelInput.from_ints(list(range(n))),
        loss_fn_inputs={"target_tokens": list(range(1, n + 1)), "weights": weights},
    )


def test_nll_evaluator_is_one_forward_and_a_weighted_mean_over_trained_tokens() -> None:
    client = ForwardOnly([[-1.0, -2.0, -7.0], [-4.0, -9.0]])
    evaluator = NLLEvaluator([datum([1.0, 1.0, 0.0]), datum([2.0, 0.0])], name="heldout")
    metrics = asyncio.run(evaluator(client))  # type: ignore[arg-type]
    assert metrics == {"heldout/nll": pytest.approx((1.0 + 2.0 + 2 * 4.0) / 4.0)}
    assert client.calls == [(2, "cross_entropy")]


def test_nll_evaluator_sends_a_large_set_in_requests_of_bounded_tokens() -> None:
    client = ForwardOnly([[-1.0, -2.0, -7.0], [-4.0, -9.0], [-0.5]])
    evaluator = NLLEvaluator([datum([1.0, 1.0, 0.0]), datum([2.0, 0.0]), datum([1.0])], name="heldout")
    evaluator.max_tokens_per_request = 3  # 3 + 2 + 1 tokens: [3], [2, 1]
    metrics = asyncio.run(evaluator(client))  # type: ignore[arg-type]
    assert metrics == {"heldout/nll": pytest.approx((1.0 + 2.0 + 2 * 4.0 + 0.5) / 5.0)}
    assert client.calls == [(1, "cross_entropy"), (2, "cross_entropy")]


def test_nll_evaluator_rejects_unusable_data() -> None:
    with pytest.raises(ValueError, match="at least one Datum"):
        NLLEvaluator([])
    no_weights = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2]), loss_fn_inputs={"target_tokens": [2, 3]}
    )
    with pytest.raises(ValueError, match=r"data\[0\] needs 'target_tokens' and 'weights'"):
        NLLEvaluator([no_weights])
