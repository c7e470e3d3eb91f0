"""Our client against the real server on both wires: the same inputs give the same numbers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

from .real_helpers import BASE_MODEL, PROBE, TEXTS, batches, linear_adam, text_datum


@pytest.fixture
def clients(real_server: LocalServer) -> Iterator[dict[str, HttpServiceClient]]:
    both = {wire: HttpServiceClient(real_server.url, wire=wire) for wire in ("json", "protobuf")}  # type: ignore[arg-type]
    yield both
    for client in both.values():
        client.close()


def _run(client: HttpServiceClient) -> dict[str, object]:
    """Pipelined training (full weights, then a forward), a sample and prompt logprobs."""
    tokenizer = client.get_tokenizer(BASE_MODEL)
    tc = client.create_lora_training_client(BASE_MODEL, rank=0)
    pending = [
        (tc.forward_backward(batch, "cross_entropy"), tc.optim_step(linear_adam()))
        for batch in batches(tokenizer, 3)
    ]
    losses = [fwd.result().metrics["loss:sum"] for fwd, _ in pending]
    logprobs = [fwd.result().loss_fn_outputs[0]["logprobs"].data for fwd, _ in pending]
    probe = tc.forward([text_datum(tokenizer, PROBE)], "cross_entropy").result()
    sampler = tc.save_weights_and_get_sampling_client()
    prompt = types.ModelInput.from_ints(tokenizer.encode(TEXTS[0])[:12])
    sample = sampler.sample(
        prompt, 2, types.SamplingParams(max_tokens=6, temperature=0.0), include_prompt_logprobs=True
    )
    result = sample.result()
    return {
        "losses": losses,
        "logprobs": logprobs,
        "probe": probe.loss_fn_outputs[0]["logprobs"].data,
        "tokens": [s.tokens for s in result.sequences],
        "sample_logprobs": [s.logprobs for s in result.sequences],
        "prompt_logprobs": result.prompt_logprobs,
        "compute_logprobs": sampler.compute_logprobs(prompt).result(),
    }


def test_protobuf_and_json_wires_give_equal_numbers(clients: dict[str, HttpServiceClient]) -> None:
    binary = clients["protobuf"]
    runs = {wire: _run(client) for wire, client in clients.items()}
    assert binary._transport.protobuf_requests and not clients["json"]._transport.protobuf_requests
    json_run, binary_run = runs["json"], runs["protobuf"]
    assert binary_run["losses"] == json_run["losses"]
    assert binary_run["logprobs"] == json_run["logprobs"]
    assert binary_run["probe"] == json_run["probe"]
    assert binary_run["tokens"] == json_run["tokens"]
    assert binary_run["sample_logprobs"] == json_run["sample_logprobs"]
    assert binary_run["prompt_logprobs"] == json_run["prompt_logprobs"]
    assert binary_run["compute_logprobs"] == json_run["compute_logprobs"]
    assert binary_run["prompt_logprobs"][0] is None  # type: ignore[index]


def test_auto_picks_protobuf_on_our_server(real_server: LocalServer) -> None:
    client = HttpServiceClient(real_server.url)
    try:
        tc = client.create_lora_training_client(BASE_MODEL, rank=4)
        out = tc.forward([text_datum(client.get_tokenizer(BASE_MODEL), PROBE)], "cross_entropy").result()
        assert client._transport.protobuf_requests
        assert np.all(np.asarray(out.loss_fn_outputs[0]["logprobs"].data) < 0)
    finally:
        client.close()
