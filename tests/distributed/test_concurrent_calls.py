"""Several ranks: training calls queued during sampling wait for the batch; what one rank alone offers is refused."""

from __future__ import annotations

import pytest

from cookbook.client import types
from cookbook.client.errors import CookbookError
from cookbook.client.http import HttpServiceClient

from .test_parity import ADAM, BASE_MODEL, RESULT_TIMEOUT_S, _batch


def test_training_queued_during_sampling_completes_on_two_ranks(two_ranks: HttpServiceClient) -> None:
    trainer = two_ranks.create_lora_training_client(BASE_MODEL, rank=4)
    sampler = trainer.save_weights_and_get_sampling_client()
    prompt = types.ModelInput.from_ints([5, 6, 7, 8])
    params = types.SamplingParams(max_tokens=160, temperature=1.0, seed=3)
    samples = [sampler.sample(prompt, num_samples=8, sampling_params=params) for _ in range(3)]
    steps = []
    for step in range(3):  # queued behind the sampling batches: the ranks decode in lockstep, alone
        steps.append(trainer.forward_backward(_batch(step), "cross_entropy"))
        steps.append(trainer.optim_step(ADAM))
    for future in samples:
        sequences = future.result(RESULT_TIMEOUT_S).sequences
        assert len(sequences) == 8 and all(len(s.tokens) == 160 or s.stop_reason == "stop" for s in sequences)
    for future in steps:
        future.result(RESULT_TIMEOUT_S)


def test_a_reward_head_is_refused_on_several_ranks(two_ranks: HttpServiceClient) -> None:
    assert types.EXTENSION_REWARD_HEAD not in two_ranks.get_server_capabilities().extensions
    with pytest.raises(CookbookError, match="one-rank server"):
        two_ranks.create_lora_training_client(BASE_MODEL, rank=4, reward_head=True)
