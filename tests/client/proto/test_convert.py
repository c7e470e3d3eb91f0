"""Round trips of every protobuf converter on random data, and the errors decoders raise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.proto import (
    RESULT_CODECS,
    ProtobufDecodeError,
    forward_backward_output_from_proto,
    forward_backward_output_to_proto,
    forward_backward_request_from_proto,
    forward_backward_request_to_proto,
    sample_response_from_proto,
    sample_response_to_proto,
    schema,
)

from . import random_wire

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_backward_request_round_trip(seed: int) -> None:
    request = random_wire.forward_backward_request(np.random.default_rng(seed))
    decoded = forward_backward_request_from_proto(forward_backward_request_to_proto(request))
    assert isinstance(decoded, types.ForwardBackwardRequest)
    assert decoded == request
    for ours, theirs in zip(
        decoded.forward_backward_input.data, request.forward_backward_input.data, strict=True
    ):
        for key, tensor in ours.loss_fn_inputs.items():
            np.testing.assert_array_equal(tensor.to_numpy(), theirs.loss_fn_inputs[key].to_numpy())


@pytest.mark.parametrize("seed", range(5))
def test_forward_request_travels_as_forward_only(seed: int) -> None:
    fwd = random_wire.forward_backward_request(np.random.default_rng(seed))
    request = types.ForwardRequest(
        forward_input=fwd.forward_backward_input, model_id=fwd.model_id, seq_id=fwd.seq_id
    )
    raw = forward_backward_request_to_proto(request)
    assert schema.ForwardBackwardRequest.FromString(raw).forward_only
    assert forward_backward_request_from_proto(raw) == request


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_backward_output_round_trip(seed: int) -> None:
    output = random_wire.forward_backward_output(np.random.default_rng(seed))
    assert forward_backward_output_from_proto(forward_backward_output_to_proto(output)) == output


@pytest.mark.parametrize("seed", SEEDS)
def test_sample_response_round_trip(seed: int) -> None:
    response = random_wire.sample_response(np.random.default_rng(seed))
    assert sample_response_from_proto(sample_response_to_proto(response)) == response


def test_empty_messages_round_trip() -> None:
    fwd = types.ForwardBackwardInput(data=[], loss_fn="cross_entropy")
    request = types.ForwardBackwardRequest(forward_backward_input=fwd, model_id="m", seq_id=1)
    assert forward_backward_request_from_proto(forward_backward_request_to_proto(request)) == request
    output = types.ForwardBackwardOutput(loss_fn_outputs=[], metrics={})
    assert forward_backward_output_from_proto(forward_backward_output_to_proto(output)) == output
    datums_without_fields = types.ForwardBackwardOutput(loss_fn_outputs=[{}, {}], metrics={"a:sum": 1.0})
    assert forward_backward_output_from_proto(forward_backward_output_to_proto(datums_without_fields)) == (
        datums_without_fields
    )
    response = types.SampleResponse(sequences=[], prompt_logprobs=[], topk_prompt_logprobs=[])
    assert sample_response_from_proto(sample_response_to_proto(response)) == response
    no_extras = types.SampleResponse(
        sequences=[types.SampledSequence(stop_reason="stop", tokens=[], logprobs=[])]
    )
    assert sample_response_from_proto(sample_response_to_proto(no_extras)) == no_extras


def test_result_codecs_cover_the_two_protobuf_results() -> None:
    assert set(RESULT_CODECS) == {types.ForwardBackwardOutput, types.SampleResponse}


def test_missing_prompt_logprob_is_nan_on_the_wire() -> None:
    response = types.SampleResponse(sequences=[], prompt_logprobs=[None, -0.5])
    raw = schema.SampleResponse.FromString(sample_response_to_proto(response)).prompt_logprobs
    first, second = np.frombuffer(raw, dtype="<f4").tolist()
    assert math.isnan(first) and second == -0.5


def test_loss_config_v2_is_read_before_the_legacy_map() -> None:
    message = schema.ForwardBackwardRequest(model_id="m", seq_id=1, loss_fn="ppo")
    message.loss_fn_config["clip_low_threshold"] = 0.1
    message.loss_fn_config_v2["clip_low_threshold"].number = 0.8
    decoded = forward_backward_request_from_proto(message.SerializeToString())
    assert decoded.forward_backward_input.loss_fn_config == {"clip_low_threshold": 0.8}
    legacy_only = schema.ForwardBackwardRequest(
        model_id="m", seq_id=1, loss_fn="ppo", loss_fn_config={"a": 0.5}
    )
    assert forward_backward_request_from_proto(
        legacy_only.SerializeToString()
    ).forward_backward_input.loss_fn_config == {"a": 0.5}


def _request_message() -> object:
    message = schema.ForwardBackwardRequest(model_id="m", seq_id=2, loss_fn="cross_entropy")
    datum = message.data.add()
    datum.model_input.add().encoded_text.tokens = np.array([1, 2], dtype="<i4").tobytes()
    return message


@pytest.mark.parametrize(
    ("corrupt", "field", "words"),
    [
        (lambda m: m.data[0].model_input.add().image.SetInParent(), "data[0].model_input[1]", "encoded_text"),
        (lambda m: m.data[0].model_input.add(), "data[0].model_input[1]", "empty"),
        (
            lambda m: setattr(m.data[0].model_input[0].encoded_text, "tokens", b"\x01\x02\x03"),
            "data[0].model_input[0].encoded_text.tokens",
            "whole number",
        ),
        (lambda m: m.loss_fn_config_v2["mode"].SetInParent(), "loss_fn_config_v2.mode", "numeric"),
        (lambda m: setattr(m.loss_fn_config_v2["mode"], "text", "fast"), "loss_fn_config_v2.mode", "numeric"),
        (lambda m: setattr(m, "loss_fn", "gspo"), "loss_fn", "cross_entropy"),
        (
            lambda m: m.data[0].loss_fn_inputs["weights"].SetInParent(),
            "data[0].loss_fn_inputs.weights.dtype",
            "dtype",
        ),
        (
            lambda m: (
                m.data[0]
                .loss_fn_inputs["weights"]
                .MergeFrom(schema.Tensor(dtype=1, shape=[3], dense=np.zeros(2, dtype="<f4").tobytes()))
            ),
            "data[0].loss_fn_inputs.weights.shape",
            "does not hold",
        ),
        (
            lambda m: m.data[0].loss_fn_inputs["weights"].MergeFrom(schema.Tensor(dtype=9, dense=b"")),
            "data[0].loss_fn_inputs.weights.dtype",
            "unknown",
        ),
    ],
)
def test_request_decoder_names_the_bad_field(corrupt: object, field: str, words: str) -> None:
    message = _request_message()
    corrupt(message)  # type: ignore[operator]
    with pytest.raises(ProtobufDecodeError) as info:
        forward_backward_request_from_proto(message.SerializeToString())  # type: ignore[attr-defined]
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("csr", "words"),
    [
        ({"crow": [0, 1], "col": [0]}, "expected rows"),
        ({"crow": [0, 2, 1], "col": [0]}, "rise"),
        ({"crow": [0, 1, 1], "col": [5]}, "below"),
        ({"crow": [0, 1, 1], "col": [0, 1]}, "column numbers"),
    ],
)
def test_bad_sparse_layouts_are_refused(csr: dict[str, list[int]], words: str) -> None:
    message = _request_message()
    tensor = message.data[0].loss_fn_inputs["weights"]  # type: ignore[attr-defined]
    tensor.dtype, tensor.shape[:] = 1, [2, 3]
    tensor.sparse_csr.values = np.ones(1, dtype="<f4").tobytes()
    tensor.sparse_csr.crow_indices = np.array(csr["crow"], dtype="<i8").tobytes()
    tensor.sparse_csr.col_indices = np.array(csr["col"], dtype="<i8").tobytes()
    with pytest.raises(ProtobufDecodeError, match=words) as info:
        forward_backward_request_from_proto(message.SerializeToString())  # type: ignore[attr-defined]
    assert info.value.field == "data[0].loss_fn_inputs.weights.sparse_csr"


@pytest.mark.parametrize(
    "decode",
    [forward_backward_request_from_proto, forward_backward_output_from_proto, sample_response_from_proto],
)
@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x10abc", b"\x1a\x05\x0a\x03"])
def test_bytes_that_do_not_parse_raise_a_decode_error(decode: object, raw: bytes) -> None:
    with pytest.raises(ProtobufDecodeError, match="not a valid"):
        decode(raw)  # type: ignore[operator]


def test_unknown_stop_reason_and_bad_topk_are_refused() -> None:
    message = schema.SampleResponse()
    message.sequences.add(stop_reason=7)
    with pytest.raises(ProtobufDecodeError, match="stop reason"):
        sample_response_from_proto(message.SerializeToString())
    message = schema.SampleResponse()
    message.topk_prompt_logprobs.length, message.topk_prompt_logprobs.k = 2, 2
    with pytest.raises(ProtobufDecodeError, match="length x k"):
        sample_response_from_proto(message.SerializeToString())


def test_bad_batched_offsets_are_refused() -> None:
    message = schema.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
    record = message.loss_fn_outputs.add(num_datums=2)
    record.fields["logprobs"].dtype = 1
    record.fields["logprobs"].data = np.zeros(3, dtype="<f4").tobytes()
    record.fields["logprobs"].offsets = np.array([0, 8, 4], dtype="<i8").tobytes()
    with pytest.raises(ProtobufDecodeError, match="offsets"):
        forward_backward_output_from_proto(message.SerializeToString())
    record.fields["logprobs"].offsets = np.array([0, 8], dtype="<i8").tobytes()
    with pytest.raises(ProtobufDecodeError, match="2 offsets for 2 datums"):
        forward_backward_output_from_proto(message.SerializeToString())


def test_tokens_outside_int32_are_refused_by_the_encoder() -> None:
    fwd = types.ForwardBackwardInput(
        data=[types.Datum(model_input=types.ModelInput.from_ints([2**31]), loss_fn_inputs={})],
        loss_fn="cross_entropy",
    )
    with pytest.raises(ValueError, match="int32"):
        forward_backward_request_to_proto(
            types.ForwardBackwardRequest(forward_backward_input=fwd, model_id="m", seq_id=1)
        )
