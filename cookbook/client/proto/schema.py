"""Our copy of the Tinker protobuf messages (package `tinker_public`), built at import time.

The table below is the `.proto` file of the Tinker wire, one row per field, written from the wire
facts: same package, message names, field numbers, types and labels as the official SDK's schema,
so bytes are interchangeable. No generated code and no `protoc`: the rows become a
`FileDescriptorProto`, loaded into a private descriptor pool (it never clashes with the official
SDK's copy in the default pool when both live in one process), and `message_factory` makes the
classes. `tests/client/proto/test_schema_compat.py` keeps it in step with the official SDK: the
descriptor must equal the newest SDK's (pinned in `tests/client/proto/official_sdk.py`) exactly, and
read every field of 0.24.1's. To follow a newer SDK, raise that pin: the test names each message
that differs, and the fix is rows in this table (and, for a field the server should act on, a
converter change).

A field's spec reads like `.proto`: `[repeated | optional | oneof <group>] <type>`, where a type is
a scalar (`bytes`, `int32`, ...), `map<string, V>`, or another message or enum of this file.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "tinker_public"
FILE_NAME = "tinker_public.proto"

# Enum values are numbered by position, from 0.
ENUMS: dict[str, tuple[str, ...]] = {
    "StopReason": ("STOP_REASON_STOP", "STOP_REASON_LENGTH"),
    "DType": ("DTYPE_UNSPECIFIED", "DTYPE_FLOAT32", "DTYPE_INT64", "DTYPE_INT32", "DTYPE_BFLOAT16"),
}

# message -> (field number, field name, spec); in the official file's order.
MESSAGES: dict[str, tuple[tuple[int, str, str], ...]] = {
    "SampleResponse": (
        (1, "sequences", "repeated SampledSequence"),
        (2, "prompt_logprobs", "optional bytes"),  # float32; NaN where a position has none
        (3, "topk_prompt_logprobs", "optional TopkLogprobs"),
        (4, "prompt_cache_hit_tokens", "int32"),
        (5, "target_prompt_logprobs", "optional Tensor"),
        (6, "prompt_alt_tokens", "optional PromptAltTokens"),
    ),
    "PromptAltTokens": (
        (1, "tokens", "Tensor"),
        (2, "logprobs", "Tensor"),
    ),
    "SampledSequence": (
        (1, "stop_reason", "StopReason"),
        (2, "tokens", "bytes"),  # int32
        (3, "logprobs", "optional bytes"),  # float32
        (4, "topk_sampled_logprobs", "optional TopkLogprobs"),
    ),
    "TopkLogprobs": (  # row-major length x k; empty cells hold token 0 and logprob -99999
        (1, "token_ids", "bytes"),  # int32
        (2, "logprobs", "bytes"),  # float32
        (3, "k", "uint32"),
        (4, "length", "uint32"),
    ),
    "SparseCsr": (
        (1, "values", "bytes"),
        (2, "crow_indices", "bytes"),  # int64
        (3, "col_indices", "bytes"),  # int64
    ),
    "Tensor": (
        (1, "dense", "oneof encoding bytes"),
        (2, "sparse_csr", "oneof encoding SparseCsr"),
        (3, "dtype", "DType"),
        (4, "shape", "repeated int64"),
    ),
    "BatchedTensor": (  # every datum's values back to back; offsets are int64 byte offsets
        (1, "data", "bytes"),
        (2, "offsets", "bytes"),
        (3, "dtype", "DType"),
        (4, "trailing_shape", "repeated int64"),
    ),
    "ArrayRecord": (
        (1, "type_tag", "string"),
        (2, "fields", "map<string, BatchedTensor>"),
        (3, "num_datums", "int64"),
    ),
    "ForwardBackwardOutput": (
        (1, "loss_fn_output_type", "string"),
        (2, "loss_fn_outputs", "repeated ArrayRecord"),
        (3, "metrics", "map<string, double>"),
    ),
    "ForwardBackwardRequest": (
        (1, "model_id", "string"),
        (2, "seq_id", "int32"),
        (3, "data", "repeated Datum"),
        (4, "loss_fn", "string"),
        (5, "loss_fn_config", "map<string, double>"),
        (6, "forward_only", "bool"),
        (7, "loss_fn_config_v2", "map<string, LossConfigValue>"),
    ),
    "LossConfigValue": (
        (1, "number", "oneof value double"),
        (2, "text", "oneof value string"),
    ),
    "Datum": (
        (1, "model_input", "repeated Chunk"),
        (2, "loss_fn_inputs", "map<string, Tensor>"),
        (3, "model_input_spans", "repeated ProvenanceSpan"),
        (4, "loss_fn_input_spans", "repeated ProvenanceSpan"),
    ),
    "ProvenanceSpan": (
        (1, "prompt_tokens", "oneof span PromptProvenanceSpan"),
        (2, "sampled_tokens", "oneof span SampledProvenanceSpan"),
    ),
    "PromptProvenanceSpan": (
        (1, "sequence_id", "string"),
        (2, "offset", "int64"),
        (3, "length", "int64"),
    ),
    "SampledProvenanceSpan": (
        (1, "sequence_id", "string"),
        (2, "offset", "int64"),
        (3, "length", "int64"),
    ),
    "Chunk": (
        (1, "encoded_text", "oneof chunk EncodedTextChunk"),
        (2, "image", "oneof chunk ImageChunk"),
        (3, "dmel", "oneof chunk DmelChunk"),
    ),
    "EncodedTextChunk": ((1, "tokens", "bytes"),),  # int32
    "ImageChunk": (
        (1, "data", "bytes"),
        (2, "format", "string"),
        (3, "expected_tokens", "optional int32"),
        (4, "override_dimensions", "optional ImageDimensions"),
    ),
    "ImageDimensions": (
        (1, "width", "uint32"),
        (2, "height", "uint32"),
    ),
    "DmelChunk": ((1, "dmel", "bytes"),),
    "SamplingParams": (
        (1, "max_tokens", "optional int32"),
        (2, "seed", "optional uint64"),
        (3, "temperature", "optional float"),
        (4, "top_k", "optional int32"),
        (5, "top_p", "optional float"),
        (6, "stop_strs", "oneof stop StopStrings"),
        (7, "stop_tokens", "oneof stop StopTokens"),
    ),
    "StopStrings": ((1, "values", "repeated string"),),
    "StopTokens": ((1, "values", "repeated int32"),),
}

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[str, int] = {
    "double": _FDP.TYPE_DOUBLE,
    "float": _FDP.TYPE_FLOAT,
    "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64,
    "int32": _FDP.TYPE_INT32,
    "uint32": _FDP.TYPE_UINT32,
    "bool": _FDP.TYPE_BOOL,
    "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES,
}


def _set_type(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    elif type_name in ENUMS:
        field.type = _FDP.TYPE_ENUM
        field.type_name = f".{PACKAGE}.{type_name}"
    elif type_name in MESSAGES:
        field.type = _FDP.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_name}"
    else:
        raise ValueError(f"unknown type {type_name!r} in the protobuf schema table")


def _map_entry_name(field_name: str) -> str:
    """protoc's name for a map field's entry message: `loss_fn_config_v2` -> `LossFnConfigV2Entry`."""
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_")) + "Entry"


def _message_proto(name: str, rows: tuple[tuple[int, str, str], ...]) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    real_oneofs = list(dict.fromkeys(spec.split()[1] for _, _, spec in rows if spec.startswith("oneof ")))
    # protoc lists real oneofs first, then one synthetic oneof per proto3 `optional` field.
    synthetic = [f"_{field_name}" for _, field_name, spec in rows if spec.startswith("optional ")]
    for oneof_name in real_oneofs + synthetic:
        message.oneof_decl.add(name=oneof_name)
    oneof_index = {oneof_name: i for i, oneof_name in enumerate(real_oneofs + synthetic)}
    for number, field_name, spec in rows:
        field = message.field.add(name=field_name, number=number, label=_FDP.LABEL_OPTIONAL)
        words = spec.split()
        if words[0] == "repeated":
            field.label = _FDP.LABEL_REPEATED
            _set_type(field, words[1])
        elif words[0] == "optional":
            field.proto3_optional = True
            field.oneof_index = oneof_index[f"_{field_name}"]
            _set_type(field, words[1])
        elif words[0] == "oneof":
            field.oneof_index = oneof_index[words[1]]
            _set_type(field, words[2])
        elif spec.startswith("map<"):
            key_type, value_type = (part.strip() for part in spec[len("map<") : -1].split(","))
            entry = message.nested_type.add(name=_map_entry_name(field_name))
            entry.options.map_entry = True
            _set_type(entry.field.add(name="key", number=1, label=_FDP.LABEL_OPTIONAL), key_type)
            _set_type(entry.field.add(name="value", number=2, label=_FDP.LABEL_OPTIONAL), value_type)
            field.label = _FDP.LABEL_REPEATED
            field.type = _FDP.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.{name}.{entry.name}"
        else:
            _set_type(field, spec)
    return message


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The schema table as a `.proto` file descriptor."""
    file = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    for enum_name, values in ENUMS.items():
        enum = file.enum_type.add(name=enum_name)
        for number, value_name in enumerate(values):
            enum.value.add(name=value_name, number=number)
    for message_name, rows in MESSAGES.items():
        file.message_type.add().CopyFrom(_message_proto(message_name, rows))
    return file


_POOL = descriptor_pool.DescriptorPool()
FILE_DESCRIPTOR = _POOL.Add(file_descriptor_proto())
_CLASSES: dict[str, Any] = {
    name: message_factory.GetMessageClass(FILE_DESCRIPTOR.message_types_by_name[name]) for name in MESSAGES
}

# The classes this project reads and writes (the rest of the file is there for exact parity).
SampleResponse = _CLASSES["SampleResponse"]
SampledSequence = _CLASSES["SampledSequence"]
TopkLogprobs = _CLASSES["TopkLogprobs"]
Tensor = _CLASSES["Tensor"]
BatchedTensor = _CLASSES["BatchedTensor"]
ArrayRecord = _CLASSES["ArrayRecord"]
ForwardBackwardOutput = _CLASSES["ForwardBackwardOutput"]
ForwardBackwardRequest = _CLASSES["ForwardBackwardRequest"]
Datum = _CLASSES["Datum"]
Chunk = _CLASSES["Chunk"]


def message_class(name: str) -> Any:
    """Any message class of the schema by its name (e.g. for tests and tools)."""
    return _CLASSES[name]


def enum_value(enum_name: str, value_name: str) -> int:
    """The number of an enum value (`enum_value("DType", "DTYPE_INT32")` is 3)."""
    return ENUMS[enum_name].index(value_name)
