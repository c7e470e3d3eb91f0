"""Sampling through the real server: seeds, greedy, stops, max_tokens, logprobs, concurrency, pickle."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cookbook.client import SamplingClient, types
from cookbook.client.http import HttpServiceClient
from cookbook.client.http.transport import Transport
from cookbook.tokenizer_utils import Tokenizer
from server_stub.sampling import FP32_LOGPROB_ATOL

from .real_helpers import BASE_MODEL, TEXTS, text_datum

PROMPT_TEXT = "User: What is the capital of France?\n\nAssistant:"


@pytest.fixture(scope="module")
def trained(real_server):  # type: ignore[no-untyped-def]
    """A sampler on lightly trained weights (so outputs are not uniform noise) and its tokenizer."""
    service = HttpServiceClient(real_server.url)
    tokenizer = service.get_tokenizer(BASE_MODEL)
    tc = service.create_lora_training_client(BASE_MODEL, rank=0)
    batch = [text_datum(tokenizer, t) for t in TEXTS[:3]]
    for _ in range(2):
        tc.forward_backward(batch, "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=3e-3))
    sampler = tc.save_weights_and_get_sampling_client()
    yield sampler, tokenizer, types.ModelInput.from_ints(tokenizer.encode(PROMPT_TEXT))
    service.close()


def test_seed_reproduces_and_greedy_is_deterministic(trained) -> None:  # type: ignore[no-untyped-def]
    sampler, _, prompt = trained
    seeded = types.SamplingParams(max_tokens=12, seed=1234, temperature=1.0)
    a = sampler.sample(prompt, 3, seeded).result()
    b = sampler.sample(prompt, 3, seeded).result()
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
    others = [
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=12, seed=s)).result().sequences[0].tokens
        for s in (1, 2, 3)
    ]
    assert len({tuple(t) for t in [*others, a.sequences[0].tokens]}) > 1  # seeds matter

    greedy = types.SamplingParams(max_tokens=12, temperature=0.0)
    g1 = sampler.sample(prompt, 2, greedy).result()
    g2 = sampler.sample(prompt, 1, greedy).result()
    assert g1.sequences[0].tokens == g1.sequences[1].tokens == g2.sequences[0].tokens


def test_greedy_picks_the_most_likely_token(trained) -> None:  # type: ignore[no-untyped-def]
    sampler, _, prompt = trained
    tokens = (
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=6, temperature=0.0))
        .result()
        .sequences[0]
        .tokens
    )
    full = types.ModelInput.from_ints(prompt.to_ints() + tokens)
    scored = sampler.sample(full, 1, types.SamplingParams(max_tokens=1), topk_prompt_logprobs=1).result()
    assert scored.topk_prompt_logprobs is not None
    top1 = [entry[0][0] for entry in scored.topk_prompt_logprobs[prompt.length :]]
    assert top1 == tokens


def test_max_tokens_and_stop_reason(trained) -> None:  # type: ignore[no-untyped-def]
    sampler, tokenizer, prompt = trained
    for max_tokens in (1, 5):
        res = sampler.sample(prompt, 4, types.SamplingParams(max_tokens=max_tokens, seed=7)).result()
        for seq in res.sequences:
            assert len(seq.tokens) <= max_tokens
            if seq.stop_reason == "length":
                assert len(seq.tokens) == max_tokens
            else:
                assert seq.tokens[-1] == tokenizer.eos_token_id


def test_stop_tokens_and_strings_end_the_sequence_and_are_kept(trained) -> None:  # type: ignore[no-untyped-def]
    sampler, tokenizer, prompt = trained
    free = (
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=16, temperature=0.0)).result().sequences[0]
    )
    assert len(free.tokens) >= 6

    stop_token = free.tokens[3]
    cut = free.tokens.index(stop_token)
    res = (
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=16, temperature=0.0, stop=[stop_token]))
        .result()
        .sequences[0]
    )
    assert res.tokens == free.tokens[: cut + 1] and res.stop_reason == "stop"

    text = tokenizer.decode(free.tokens)
    stop_text = tokenizer.decode(free.tokens[2:5])[1:]  # a string that spans token boundaries
    assert stop_text and stop_text in text
    res = (
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=16, temperature=0.0, stop=[stop_text]))
        .result()
        .sequences[0]
    )
    out_text = tokenizer.decode(res.tokens)
    assert res.stop_reason == "stop"
    assert stop_text in out_text and stop_text not in tokenizer.decode(res.tokens[:-1])
    assert res.tokens == free.tokens[: len(res.tokens)]


def test_sampled_logprobs_equal_compute_logprobs_at_temperature_one(trained) -> None:  # type: ignore[no-untyped-def]
    sampler, _, prompt = trained
    seq = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=10, seed=3)).result().sequences[0]
    assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens)
    scored = sampler.compute_logprobs(types.ModelInput.from_ints(prompt.to_ints() + seq.tokens)).result()
    assert scored[0] is None and len(scored) == prompt.length + len(seq.tokens)
    np.testing.assert_allclose(scored[prompt.length :], seq.logprobs, rtol=0, atol=FP32_LOGPROB_ATOL)


def test_two_hundred_concurrent_samples(trained, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    sampler, _, prompt = trained
    params = [types.SamplingParams(max_tokens=4, seed=i) for i in range(200)]
    submitted: list[str] = []
    submit = Transport.submit

    async def recording_submit(self: Transport, path: str, body: Any, **kwargs: Any) -> str:
        submitted.append(path)
        return await submit(self, path, body, **kwargs)

    monkeypatch.setattr(Transport, "submit", recording_submit)

    async def main() -> list[types.SampleResponse]:
        return await asyncio.gather(*(sampler.sample_async(prompt, 1, p) for p in params))

    results = asyncio.run(main())
    # The burst went in a few exchanges (one on a quiet machine: a loaded one may pause a thread), not 200.
    assert "/asample_batch" in submitted and len(submitted) <= 10
    assert all(len(r.sequences) == 1 and 1 <= len(r.sequences[0].tokens) <= 4 for r in results)
    # Batched with 199 others, a seeded request gives what it gives alone.
    for i in (0, 117):
        alone = sampler.sample(prompt, 1, params[i]).result()
        assert alone.sequences[0].tokens == results[i].sequences[0].tokens


def test_pickled_sampling_client_works_in_another_process(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sampler, _, prompt = trained
    greedy = types.SamplingParams(max_tokens=8, temperature=0.0)
    expected = sampler.sample(prompt, 1, greedy).result().sequences[0].tokens
    blob = tmp_path / "sampler.pkl"
    blob.write_bytes(pickle.dumps((sampler, prompt, greedy)))
    script = (
        "import pickle, sys\n"
        "sampler, prompt, params = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "print(sampler.sample(prompt, 1, params).result().sequences[0].tokens)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", script, str(blob)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip() == str(expected)


def test_sampling_from_a_base_model_and_a_saved_path(real_service: HttpServiceClient) -> None:
    tokenizer: Tokenizer = real_service.get_tokenizer(BASE_MODEL)
    prompt = types.ModelInput.from_ints(tokenizer.encode(PROMPT_TEXT))
    tc = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    path = tc.save_weights_for_sampler("untrained").result().path
    assert path == f"tinker://{tc.model_id}/sampler_weights/untrained"
    from_path: SamplingClient = tc.create_sampling_client(path)
    base = real_service.create_sampling_client(base_model=BASE_MODEL)
    assert from_path.get_base_model() == BASE_MODEL
    # A fresh full-weight model starts from the base weights: same scores.
    np.testing.assert_allclose(
        np.array(from_path.compute_logprobs(prompt).result()[1:]),
        np.array(base.compute_logprobs(prompt).result()[1:]),
        atol=1e-5,
    )
