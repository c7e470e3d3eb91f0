"""Checkpoints survive a server restart: same weights, same optimizer state, same next step."""

from __future__ import annotations

import numpy as np

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

from .real_helpers import BASE_MODEL, batches, probe_logprobs

ADAM = types.AdamParams(learning_rate=2e-3)


def test_save_restart_load_gives_identical_logprobs_and_next_step(real_server: LocalServer) -> None:
    service = HttpServiceClient(real_server.url)
    tokenizer = service.get_tokenizer(BASE_MODEL)
    steps = batches(tokenizer, 3)
    tc = service.create_lora_training_client(BASE_MODEL, rank=0)
    for batch in steps[:2]:
        tc.forward_backward(batch, "cross_entropy")
        tc.optim_step(ADAM)
    state_path = tc.save_state("after-2").result().path
    sampler_path = tc.save_weights_for_sampler("after-2").result().path
    saved = probe_logprobs(tc, tokenizer)
    prompt = types.ModelInput.from_ints(tokenizer.encode("User: Say hello.\n\nAssistant:"))
    saved_scores = service.create_sampling_client(model_path=sampler_path).compute_logprobs(prompt).result()
    tc.forward_backward(steps[2], "cross_entropy")
    tc.optim_step(ADAM).result()
    continued = probe_logprobs(tc, tokenizer)
    service.close()

    real_server.restart()  # same port, same storage dir; nothing survives but the files
    service = HttpServiceClient(real_server.url)
    assert service.weights_info(state_path).base_model == BASE_MODEL

    resumed = service.create_training_client_from_state_with_optimizer(state_path)
    np.testing.assert_array_equal(probe_logprobs(resumed, tokenizer), saved)
    resumed.forward_backward(steps[2], "cross_entropy")
    resumed.optim_step(ADAM).result()
    np.testing.assert_allclose(probe_logprobs(resumed, tokenizer), continued, rtol=0, atol=1e-6)

    # Weights only: same start, but a fresh optimizer takes a different next step.
    fresh = service.create_training_client_from_state(state_path)
    np.testing.assert_array_equal(probe_logprobs(fresh, tokenizer), saved)
    fresh.forward_backward(steps[2], "cross_entropy")
    fresh.optim_step(ADAM).result()
    assert np.abs(probe_logprobs(fresh, tokenizer) - continued).max() > 1e-4

    reloaded = service.create_sampling_client(model_path=sampler_path)
    assert reloaded.compute_logprobs(prompt).result() == saved_scores
    service.close()
