"""The small pieces under the transport: JSON codec, retry policy, sequence gate."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from cookbook.client import types
from cookbook.client.http import transport as codec
from cookbook.client.http.settings import RetryPolicy
from cookbook.client.http.training import SequenceGate
from cookbook.client.http.transport import is_retryable_status


def big_request() -> types.ForwardBackwardRequest:
    rng = random.Random(0)
    data = [
        types.Datum(
            model_input=types.ModelInput.from_ints([rng.randrange(512) for _ in range(50)]),
            loss_fn_inputs={
                "target_tokens": [rng.randrange(512) for _ in range(50)],
                "weights": [rng.uniform(-2, 2) for _ in range(50)],
            },
        )
        for _ in range(4)
    ]
    return types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
        model_id="m",
        seq_id=1,
    )


@pytest.mark.parametrize("use_orjson", [True, False])
def test_codec_round_trips_exactly_and_omits_none(monkeypatch: pytest.MonkeyPatch, use_orjson: bool) -> None:
    if not use_orjson:
        monkeypatch.setattr(codec, "_orjson", None)
    else:
        assert codec._orjson is not None  # orjson is a dependency
    request = big_request()
    raw = codec.encode(request)
    assert json.loads(raw) == request.model_dump(mode="json", exclude_none=True)
    assert "loss_fn_config" not in codec.decode(raw)["forward_backward_input"]
    assert types.ForwardBackwardRequest.model_validate(codec.decode(raw)) == request


def test_both_encoders_agree() -> None:
    assert codec._orjson is not None  # orjson is a dependency
    request = big_request()
    assert json.loads(codec.encode(request)) == json.loads(request.model_dump_json(exclude_none=True))


def test_retryable_statuses() -> None:
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (400, 401, 403, 404, 409, 410, 422))


def test_backoff_grows_with_jitter_and_respects_bounds() -> None:
    policy = RetryPolicy(max_retries=3, initial_delay_s=0.5, max_delay_s=4.0, max_total_s=10.0)
    rng = random.Random(1)
    for attempt in range(8):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        ceiling = min(4.0, 0.5 * 2**attempt)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # the whole jitter range is used
    assert policy.delay(0, rng, retry_after_s=3.0) == pytest.approx(3.0, abs=0.5)
    assert policy.should_retry(2, 1.0, 1.0)
    assert not policy.should_retry(3, 1.0, 1.0)  # max_retries reached
    assert not policy.should_retry(0, 9.5, 1.0)  # total time cap
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_sequence_gate_releases_in_order() -> None:
    async def main() -> list[int]:
        gate = SequenceGate(first=1)
        order: list[int] = []

        async def worker(seq: int) -> None:
            await gate.wait_turn(seq)
            order.append(seq)
            await asyncio.sleep(0)
            gate.advance(seq)

        await asyncio.gather(*(worker(s) for s in [5, 3, 1, 4, 2]))
        with pytest.raises(RuntimeError, match="already had its turn"):
            await gate.wait_turn(2)
        return order

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
