"""Bytes written by the official SDK's converters are read by ours, and ours by theirs (0.24.1 and 0.38.0).

Every case is built here from fixed seeds, sent to the official converters in one child process
per SDK version (`official_codec.py`), and checked against our converters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.proto import (
    forward_backward_output_from_proto,
    forward_backward_output_to_proto,
    forward_backward_request_from_proto,
    forward_backward_request_to_proto,
    sample_response_to_proto,
)

from . import random_wire
from .official_sdk import OfficialSdk, b64, run_codec, unb64

REQUEST_SEEDS = range(4)
OUTPUT_SEEDS = range(4)
SAMPLE_SEEDS = range(6)


def _request(seed: int) -> types.ForwardBackwardRequest:
    request = random_wire.forward_backward_request(np.random.default_rng(seed))
    # One more datum with both tensor layouts and [N, K] targets, whatever the seed drew.
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([5, 6, 7]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=[1, 2, 3, 4, 5, 6], dtype="int64", shape=[3, 2]),
            "weights": random_wire.sparse_tensor(np.random.default_rng(seed), 3, 2, "float32"),
        },
    )
    fwd = request.forward_backward_input.model_copy(
        update={"data": [*request.forward_backward_input.data, datum], "loss_fn": "cross_entropy"}
    )
    return request.model_copy(update={"forward_backward_input": fwd})


def _request_spec(request: types.ForwardBackwardRequest, forward_only: bool) -> dict[str, Any]:
    fwd = request.forward_backward_input
    return {
        "model_id": request.model_id,
        "seq_id": request.seq_id,
        "loss_fn": fwd.loss_fn,
        "loss_fn_config": fwd.loss_fn_config,
        "forward_only": forward_only,
        "data": [
            {
                "chunks": [chunk.tokens for chunk in datum.model_input.chunks],
                "loss_fn_inputs": {
                    key: t.model_dump(exclude_none=True) for key, t in datum.loss_fn_inputs.items()
                },
            }
            for datum in fwd.data
        ],
    }


def _sample(seed: int) -> types.SampleResponse:
    response = random_wire.sample_response(np.random.default_rng(seed))
    last = types.SampledSequence(stop_reason="stop", tokens=[3, 4], logprobs=[-0.5, -1.0])
    return response.model_copy(update={"sequences": [*response.sequences, last]})


def _commands() -> dict[str, dict[str, Any]]:
    commands: dict[str, dict[str, Any]] = {"build_output": {"command": "build_output"}}
    for seed in REQUEST_SEEDS:
        request = _request(seed)
        for forward_only in (False, True):
            spec = _request_spec(request, forward_only)
            commands[f"encode_request/{seed}/{forward_only}"] = {"command": "encode_request", "request": spec}
        spec = _request_spec(request, forward_only=False)
        raw = b64(forward_backward_request_to_proto(request))
        commands[f"same_request/{seed}"] = {"command": "same_request", "request": spec, "bytes": raw}
    for seed in OUTPUT_SEEDS:
        raw = b64(
            forward_backward_output_to_proto(random_wire.forward_backward_output(np.random.default_rng(seed)))
        )
        commands[f"decode_output/{seed}"] = {"command": "decode_output", "bytes": raw}
    for seed in SAMPLE_SEEDS:
        commands[f"decode_sample/{seed}"] = {
            "command": "decode_sample",
            "bytes": b64(sample_response_to_proto(_sample(seed))),
        }
    return commands


_answers_by_site: dict[Path, dict[str, Any]] = {}


@pytest.fixture
def official(sdk: OfficialSdk) -> dict[str, Any]:
    """The official converters' answers to every case, for the SDK version under test."""
    if sdk.site not in _answers_by_site:
        _answers_by_site[sdk.site] = run_codec(sdk, _commands())
    return _answers_by_site[sdk.site]


@pytest.mark.parametrize("seed", REQUEST_SEEDS)
@pytest.mark.parametrize("forward_only", [False, True])
def test_official_request_bytes_decode_to_the_same_request(
    official: dict[str, Any], seed: int, forward_only: bool
) -> None:
    request = _request(seed)
    decoded = forward_backward_request_from_proto(
        unb64(official[f"encode_request/{seed}/{forward_only}"]["bytes"])
    )
    if forward_only:
        fwd = request.forward_backward_input
        expected: Any = types.ForwardRequest(
            forward_input=fwd, model_id=request.model_id, seq_id=request.seq_id
        )
    else:
        expected = request
    assert decoded == expected


@pytest.mark.parametrize("seed", REQUEST_SEEDS)
def test_our_request_bytes_equal_the_official_message(official: dict[str, Any], seed: int) -> None:
    assert official[f"same_request/{seed}"]["same"], official["version"]


def _tensors_as_lists(output: types.ForwardBackwardOutput) -> list[dict[str, Any]]:
    return [
        {
            key: {"data": t.to_numpy().reshape(-1).tolist(), "dtype": t.dtype, "shape": t.shape}
            for key, t in datum.items()
        }
        for datum in output.loss_fn_outputs
    ]


@pytest.mark.parametrize("seed", OUTPUT_SEEDS)
def test_official_decoder_reads_our_forward_backward_output(official: dict[str, Any], seed: int) -> None:
    output = random_wire.forward_backward_output(np.random.default_rng(seed))
    theirs = official[f"decode_output/{seed}"]["output"]
    assert theirs["loss_fn_output_type"] == output.loss_fn_output_type
    assert theirs["metrics"] == output.metrics
    assert theirs["loss_fn_outputs"] == _tensors_as_lists(output)


def test_output_built_with_the_official_schema_decodes_like_the_official_decoder(
    official: dict[str, Any],
) -> None:
    answer = official["build_output"]
    ours = forward_backward_output_from_proto(unb64(answer["bytes"]))
    assert _tensors_as_lists(ours) == answer["output"]["loss_fn_outputs"]
    assert ours.metrics == answer["output"]["metrics"]
    # bfloat16 and int32 columns over two records: the values widen exactly.
    assert ours.loss_fn_outputs[1]["logprobs"].data == [0.15625, 3.0, -0.5]
    assert ours.loss_fn_outputs[1]["ids"].shape == [2, 2] and ours.loss_fn_outputs[2]["ids"].data == [1, 2]


@pytest.mark.parametrize("seed", SAMPLE_SEEDS)
def test_official_decoder_reads_our_sample_response(official: dict[str, Any], seed: int) -> None:
    response = _sample(seed)
    theirs = official[f"decode_sample/{seed}"]["sample"]
    assert theirs["sequences"] == [
        {"stop_reason": s.stop_reason, "tokens": s.tokens, "logprobs": s.logprobs or None}
        for s in response.sequences
    ]
    assert theirs["prompt_logprobs"] == (response.prompt_logprobs or None)
    expected_topk = response.topk_prompt_logprobs
    if expected_topk is not None:
        expected_topk = [
            None if row is None else [list(pair) for pair in row] for row in expected_topk
        ] or None
    assert theirs["topk_prompt_logprobs"] == expected_topk
    assert theirs["prompt_cache_hit_tokens"] == response.prompt_cache_hit_tokens
