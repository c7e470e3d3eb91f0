"""Sampling: requests that share a prompt share its prefill, and get exactly what they would alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cookbook.client import types
from server_stub.engine import SampleJob
from server_stub.sampling import FP32_LOGPROB_ATOL
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, sample_request


def _sample(engine: TorchEngine, sampler: str, *requests: types.SampleRequest) -> list[types.SampleResponse]:
    results = engine.sample([SampleJob(sampler, r) for r in requests])
    assert not any(isinstance(r, Exception) for r in results), results
    return results  # type: ignore[return-value]


def test_a_shared_prompt_is_prefilled_once_and_answers_as_if_alone(engine: TorchEngine) -> None:
    sampler = engine.create_sampler(TINY, None).sampler_id
    module = engine.registry.get(TINY).hub.base_module
    prefill_rows: list[int] = []

    def record(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:  # decode steps feed one token per row
            prefill_rows.append(ids.shape[0])

    shared, other = list(range(30, 50)), list(range(60, 67))
    group = [sample_request(shared, max_tokens=6, temperature=1.0, seed=seed) for seed in (1, 2, 3)]
    scored = sample_request(shared, num_samples=2, max_tokens=6, temperature=1.0, seed=4).model_copy(
        update={"prompt_logprobs": True}
    )
    lone = sample_request(other, max_tokens=6, temperature=0.0)
    alone = [_sample(engine, sampler, request)[0] for request in [*group, scored, lone]]
    handle = module.register_forward_pre_hook(record, with_kwargs=True)
    try:
        batched = _sample(engine, sampler, group[0], lone, group[1], scored, group[2])
    finally:
        handle.remove()
    assert prefill_rows == [2]  # two distinct prompts, five requests, six rows
    by_request = [batched[0], batched[2], batched[4], batched[3], batched[1]]
    for solo, together in zip(alone, by_request, strict=True):
        assert [s.tokens for s in together.sequences] == [s.tokens for s in solo.sequences]
        for a, b in zip(solo.sequences, together.sequences, strict=True):
            assert b.logprobs == pytest.approx(a.logprobs, abs=FP32_LOGPROB_ATOL)
    assert len({tuple(s.tokens) for s in by_request[0].sequences + by_request[1].sequences}) == 2  # own seeds
    assert by_request[3].prompt_logprobs is not None
    assert by_request[3].prompt_logprobs[0] is None
    assert by_request[3].prompt_logprobs[1:] == pytest.approx(
        alone[3].prompt_logprobs[1:], abs=FP32_LOGPROB_ATOL
    )
