"""A forward over many datums, cut into requests of bounded tokens, equals one request on a real engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cookbook.client import types
from cookbook.client.in_process import InProcessServer, InProcessServiceClient
from cookbook.utils.forward_pieces import cut_by_tokens, forward_outputs
from server_stub.config import ServerConfig


def datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


DATA = [datum([(5 * i + j) % 200 + 1 for j in range(3 + 2 * i)]) for i in range(6)]  # 2, 4, ..., 12 tokens


def test_pieces_keep_order_and_stay_within_the_budget() -> None:
    pieces = cut_by_tokens(DATA, 10)
    assert [d for piece in pieces for d in piece] == DATA
    assert [[d.model_input.length for d in piece] for piece in pieces] == [[2, 4], [6], [8], [10], [12]]
    assert cut_by_tokens(DATA, 1_000) == [DATA]
    assert cut_by_tokens([], 5) == []
    with pytest.raises(ValueError, match="max_tokens"):
        cut_by_tokens(DATA, 0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    server = InProcessServer(ServerConfig(storage_dir=tmp_path))
    yield server
    server.close()


def test_forward_in_pieces_equals_one_request(server: InProcessServer) -> None:
    async def both() -> tuple[list[types.LossFnOutput], list[types.LossFnOutput]]:
        client = await InProcessServiceClient(server).create_lora_training_client_async("tiny-llama", rank=0)
        return (
            await forward_outputs(client, DATA, "cross_entropy", max_tokens=1_000),
            await forward_outputs(client, DATA, "cross_entropy", max_tokens=10),
        )

    whole, pieces = asyncio.run(both())
    assert len(whole) == len(pieces) == len(DATA)
    for a, b, d in zip(whole, pieces, DATA, strict=True):
        assert b["logprobs"].shape == [d.model_input.length]
        assert b["logprobs"].data == pytest.approx(a["logprobs"].data, abs=1e-5)
