"""Converters between the project's wire types (`cookbook.client.types`) and protobuf bytes.

Three messages travel as protobuf: the `forward_backward` request (a forward is the same message
with `forward_only` set) and the two results worth the bytes, `ForwardBackwardOutput` and
`SampleResponse`. Each has one function per direction. Decoders check what they read and raise
`ProtobufDecodeError` naming the field; they build the pydantic objects without re-validating
what the bytes already guarantee (the loss name and config still go through pydantic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from cookbook.client import types
from cookbook.client.proto import schema
from cookbook.client.proto.errors import ProtobufDecodeError
from cookbook.client.proto.tensors import (
    FLOAT32,
    INT32,
    INT64,
    NATURAL_WIRE_DTYPE,
    WIRE_DTYPES,
    batched_tensor_from_arrays,
    batched_tensor_to_arrays,
    int32_bytes,
    int32_list,
    tensor_data_from_proto,
    tensor_data_to_proto,
    values_from_bytes,
)

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
STOP_REASONS: dict[str, int] = {
    "stop": schema.enum_value("StopReason", "STOP_REASON_STOP"),
    "length": schema.enum_value("StopReason", "STOP_REASON_LENGTH"),
}
_STOP_REASON_NAMES = {number: name for name, number in STOP_REASONS.items()}
# An empty top-k cell (the wire pads every position to k entries).
TOPK_EMPTY_TOKEN = 0
TOPK_EMPTY_LOGPROB = -99999.0

M = TypeVar("M", bound=types.WireModel)


def _parse(message_class: Any, raw: bytes) -> Any:
    message = message_class()
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise ProtobufDecodeError(f"the body is not a valid {message_class.__name__} message: {exc}") from exc
    return message


def _float32_bytes(values: list[float] | list[float | None]) -> bytes:
    return np.array([math.nan if v is None else v for v in values], dtype="<f4").tobytes()


# -- forward_backward request -----------------------------------------------------------------


def forward_backward_request_to_proto(request: types.ForwardBackwardRequest | types.ForwardRequest) -> bytes:
    """The protobuf body of a forward_backward call; a `ForwardRequest` becomes `forward_only`."""
    message = schema.ForwardBackwardRequest()
    message.model_id = request.model_id
    message.seq_id = request.seq_id or 0  # the field has no "unset": 0 is never a valid seq_id
    if isinstance(request, types.ForwardRequest):
        fwd, message.forward_only = request.forward_input, True
    else:
        fwd = request.forward_backward_input
    message.loss_fn = fwd.loss_fn
    for key, value in (fwd.loss_fn_config or {}).items():
        message.loss_fn_config[key] = value  # the legacy map, for servers that predate v2
        message.loss_fn_config_v2[key].number = value
    for datum in fwd.data:
        datum_message = message.data.add()
        for chunk in datum.model_input.chunks:
            datum_message.model_input.add().encoded_text.tokens = int32_bytes(chunk.tokens)
        for key, tensor in datum.loss_fn_inputs.items():
            tensor_data_to_proto(tensor, datum_message.loss_fn_inputs[key])
    return message.SerializeToString()


def forward_backward_request_from_proto(raw: bytes) -> types.ForwardBackwardRequest | types.ForwardRequest:
    """A protobuf forward_backward body as the JSON wire's request (`ForwardRequest` if forward_only)."""
    message = _parse(schema.ForwardBackwardRequest, raw)
    data = [_datum_from_proto(datum, f"data[{d}]") for d, datum in enumerate(message.data)]
    try:
        fwd = types.ForwardBackwardInput.model_validate(
            {"data": data, "loss_fn": message.loss_fn, "loss_fn_config": _loss_fn_config(message)}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ProtobufDecodeError(first["msg"], field) from exc
    if message.forward_only:
        return types.ForwardRequest(forward_input=fwd, model_id=message.model_id, seq_id=message.seq_id)
    return types.ForwardBackwardRequest(
        forward_backward_input=fwd, model_id=message.model_id, seq_id=message.seq_id
    )


def _loss_fn_config(message: Any) -> dict[str, float] | None:
    """`loss_fn_config_v2` when present (newer SDKs write both), else the legacy float map."""
    if message.loss_fn_config_v2:
        config = {}
        for key, value in message.loss_fn_config_v2.items():
            if value.WhichOneof("value") != "number":
                raise ProtobufDecodeError(
                    "this server takes numeric loss settings only", f"loss_fn_config_v2.{key}"
                )
            config[key] = value.number
        return config
    return dict(message.loss_fn_config) or None


def _datum_from_proto(message: Any, field: str) -> types.Datum:
    chunks = []
    for c, chunk in enumerate(message.model_input):
        kind = chunk.WhichOneof("chunk")
        if kind != "encoded_text":
            raise ProtobufDecodeError(
                f"{kind or 'an empty'} chunk: this server reads token chunks (encoded_text) only",
                f"{field}.model_input[{c}]",
            )
        tokens = int32_list(chunk.encoded_text.tokens, f"{field}.model_input[{c}].encoded_text.tokens")
        chunks.append(types.EncodedTextChunk.model_construct(tokens=tokens))
    inputs = {
        key: tensor_data_from_proto(tensor, f"{field}.loss_fn_inputs.{key}")
        for key, tensor in message.loss_fn_inputs.items()
    }
    return types.Datum.model_construct(
        model_input=types.ModelInput.model_construct(chunks=chunks), loss_fn_inputs=inputs
    )


# -- forward_backward result ------------------------------------------------------------------


def forward_backward_output_to_proto(output: types.ForwardBackwardOutput) -> bytes:
    """A forward/forward_backward result as protobuf bytes.

    Datums go into one `ArrayRecord` while their fields keep the same names, dtypes and trailing
    dims; a change starts a new record (readers concatenate records in order).
    """
    message = schema.ForwardBackwardOutput(loss_fn_output_type=output.loss_fn_output_type)
    message.metrics.update(output.metrics)
    record_key: tuple[Any, ...] | None = None
    record_datums: list[dict[str, np.ndarray]] = []
    for datum in output.loss_fn_outputs:
        arrays = {name: tensor.to_numpy() for name, tensor in datum.items()}
        key = tuple((name, tensor.dtype, arrays[name].shape[1:]) for name, tensor in datum.items())
        if record_datums and key != record_key:
            _add_record(message, record_key, record_datums)
            record_datums = []
        record_key = key
        record_datums.append(arrays)
    if record_datums:
        _add_record(message, record_key, record_datums)
    return message.SerializeToString()


def _add_record(message: Any, key: tuple[Any, ...] | None, datums: list[dict[str, np.ndarray]]) -> None:
    record = message.loss_fn_outputs.add(type_tag=message.loss_fn_output_type, num_datums=len(datums))
    for name, dtype, _ in key or ():
        arrays = [datum[name].reshape(-1) if datum[name].ndim == 0 else datum[name] for datum in datums]
        batched_tensor_from_arrays(arrays, NATURAL_WIRE_DTYPE[dtype], record.fields[name])


def forward_backward_output_from_proto(raw: bytes) -> types.ForwardBackwardOutput:
    """Protobuf bytes as a forward/forward_backward result (each datum's tensors with their shapes)."""
    message = _parse(schema.ForwardBackwardOutput, raw)
    outputs: list[dict[str, types.TensorData]] = []
    for r, record in enumerate(message.loss_fn_outputs):
        count = _record_size(record, f"loss_fn_outputs[{r}]")
        columns = [
            (
                name,
                WIRE_DTYPES[tensor.dtype].decoded,
                batched_tensor_to_arrays(tensor, count, f"loss_fn_outputs[{r}].fields.{name}"),
            )
            for name, tensor in record.fields.items()
        ]
        outputs.extend(
            {
                name: types.TensorData.model_construct(
                    data=arrays[i].reshape(-1).tolist(), dtype=dtype, shape=list(arrays[i].shape)
                )
                for name, dtype, arrays in columns
            }
            for i in range(count)
        )
    return types.ForwardBackwardOutput.model_construct(
        loss_fn_output_type=message.loss_fn_output_type.rsplit(":", 1)[-1] or "ArrayRecord",
        loss_fn_outputs=outputs,
        metrics=dict(message.metrics),
    )


def _record_size(record: Any, field: str) -> int:
    """The datums in a record; records that predate `num_datums` are counted by their offsets."""
    if record.num_datums or not record.fields:
        return record.num_datums
    first = next(iter(record.fields.values()))
    return values_from_bytes(first.offsets, INT64, f"{field}.offsets").size - 1


# -- sample result ----------------------------------------------------------------------------


def sample_response_to_proto(response: types.SampleResponse) -> bytes:
    """A sample result as protobuf bytes (a missing prompt logprob travels as NaN)."""
    message = schema.SampleResponse(prompt_cache_hit_tokens=response.prompt_cache_hit_tokens)
    for sequence in response.sequences:
        sequence_message = message.sequences.add(
            stop_reason=STOP_REASONS[sequence.stop_reason], tokens=int32_bytes(sequence.tokens)
        )
        if sequence.logprobs is not None:
            sequence_message.logprobs = _float32_bytes(sequence.logprobs)
    if response.prompt_logprobs is not None:
        message.prompt_logprobs = _float32_bytes(response.prompt_logprobs)
    if response.topk_prompt_logprobs is not None:
        _topk_to_proto(response.topk_prompt_logprobs, message.topk_prompt_logprobs)
    return message.SerializeToString()


def sample_response_from_proto(raw: bytes) -> types.SampleResponse:
    """Protobuf bytes as a sample result."""
    message = _parse(schema.SampleResponse, raw)
    sequences = []
    for s, sequence in enumerate(message.sequences):
        stop_reason = _STOP_REASON_NAMES.get(sequence.stop_reason)
        if stop_reason is None:
            raise ProtobufDecodeError(
                f"unknown stop reason {sequence.stop_reason}", f"sequences[{s}].stop_reason"
            )
        logprobs = (
            values_from_bytes(sequence.logprobs, FLOAT32, f"sequences[{s}].logprobs").tolist()
            if sequence.HasField("logprobs")
            else None
        )
        sequences.append(
            types.SampledSequence.model_construct(
                stop_reason=stop_reason,
                tokens=int32_list(sequence.tokens, f"sequences[{s}].tokens"),
                logprobs=logprobs,
            )
        )
    prompt_logprobs = None
    if message.HasField("prompt_logprobs"):
        values = values_from_bytes(message.prompt_logprobs, FLOAT32, "prompt_logprobs")
        prompt_logprobs = [None if math.isnan(v) else v for v in values.tolist()]
    topk = (
        _topk_from_proto(message.topk_prompt_logprobs, "topk_prompt_logprobs")
        if message.HasField("topk_prompt_logprobs")
        else None
    )
    return types.SampleResponse.model_construct(
        sequences=sequences,
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=topk,
        prompt_cache_hit_tokens=message.prompt_cache_hit_tokens,
    )


def _topk_to_proto(rows: list[list[tuple[int, float]] | None], out: Any) -> None:
    """Rows of (token, logprob) as the wire's dense length x k matrices, padded with empty cells."""
    k = max((len(row) for row in rows if row), default=1 if rows else 0)
    token_ids = np.full((len(rows), k), TOPK_EMPTY_TOKEN, dtype="<i4")
    logprobs = np.full((len(rows), k), TOPK_EMPTY_LOGPROB, dtype="<f4")
    for i, row in enumerate(rows):
        for j, (token, logprob) in enumerate(row or ()):
            token_ids[i, j], logprobs[i, j] = token, logprob
    out.length, out.k = len(rows), k
    out.token_ids, out.logprobs = token_ids.tobytes(), logprobs.tobytes()


def _topk_from_proto(message: Any, field: str) -> list[list[tuple[int, float]] | None]:
    """The dense matrices back as rows; a row of empty cells is None, trailing empty cells go."""
    length, k = message.length, message.k
    token_ids = values_from_bytes(message.token_ids, INT32, f"{field}.token_ids")
    logprobs = values_from_bytes(message.logprobs, FLOAT32, f"{field}.logprobs")
    if token_ids.size != length * k or logprobs.size != length * k:
        raise ProtobufDecodeError(f"the matrices do not hold length x k = {length} x {k} cells", field)
    empty = (token_ids == TOPK_EMPTY_TOKEN) & (logprobs == TOPK_EMPTY_LOGPROB)
    kept = k - np.argmin(empty.reshape(length, k)[:, ::-1], axis=1) if k else np.zeros(length, dtype=np.int64)
    kept[empty.reshape(length, k).all(axis=1)] = 0
    pairs = list(zip(token_ids.tolist(), logprobs.tolist(), strict=True))
    return [pairs[i * k : i * k + int(n)] if n else None for i, n in enumerate(kept.tolist())]


# -- which results travel as protobuf ---------------------------------------------------------


@dataclass(frozen=True)
class ResultCodec(Generic[M]):
    """How one result type is written and read on the protobuf wire."""

    encode: Callable[[M], bytes]
    decode: Callable[[bytes], M]


# A client asks for protobuf (`Accept`) when it waits for one of these; a server answers it then.
RESULT_CODECS: dict[type[types.WireModel], ResultCodec[Any]] = {
    types.ForwardBackwardOutput: ResultCodec(
        forward_backward_output_to_proto, forward_backward_output_from_proto
    ),
    types.SampleResponse: ResultCodec(sample_response_to_proto, sample_response_from_proto),
}
