"""A sample job's `on_token` is told every token of every row as it is sampled, and only those."""

from __future__ import annotations

from pathlib import Path

from cookbook.client import types
from server_stub.engine import SampleJob
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, sample_request


def test_each_row_streams_exactly_the_tokens_it_returns_batched_with_a_silent_request(tmp_path: Path) -> None:
    engine = TorchEngine(tmp_path / "storage", device="cpu")
    engine.create_model("m", TINY, None, None)
    sampler = engine.save_sampler_weights("m", None, None).sampling_session_id
    assert sampler is not None
    streamed: dict[int, list[int]] = {0: [], 1: [], 2: []}
    told = SampleJob(
        sampler,
        sample_request([5, 17, 42], 3, max_tokens=9, temperature=1.0, seed=7, stop=[5]),
        lambda index, token: streamed[index].append(token),
    )
    silent = SampleJob(sampler, sample_request([9, 9], 2, max_tokens=12, temperature=1.0, seed=1))
    results = engine.sample([told, silent])
    response = results[0]
    assert isinstance(response, types.SampleResponse) and isinstance(results[1], types.SampleResponse)
    assert [streamed[i] for i in range(3)] == [seq.tokens for seq in response.sequences]
    assert all(streamed[i] for i in range(3))
