"""The binary (protobuf) form of the Tinker wire: our own copy of its messages and the converters.

`schema` builds the `tinker_public` messages from one table (no generated code, no protoc);
`convert` turns the project's wire types into those messages' bytes and back; `tensors` moves
arrays through numpy; `compression` writes zstd bodies; `sequence_key` finds whose call a
broken body was. Both the client and the server import this package; it never imports torch.
"""

from cookbook.client.proto.compression import ZSTD, zstd_compress
from cookbook.client.proto.convert import (
    PROTOBUF_CONTENT_TYPE,
    RESULT_CODECS,
    ResultCodec,
    forward_backward_output_from_proto,
    forward_backward_output_to_proto,
    forward_backward_request_from_proto,
    forward_backward_request_to_proto,
    sample_response_from_proto,
    sample_response_to_proto,
)
from cookbook.client.proto.errors import ProtobufDecodeError
from cookbook.client.proto.sequence_key import forward_backward_sequence_key

__all__ = [
    "PROTOBUF_CONTENT_TYPE",
    "RESULT_CODECS",
    "ZSTD",
    "ProtobufDecodeError",
    "ResultCodec",
    "forward_backward_output_from_proto",
    "forward_backward_output_to_proto",
    "forward_backward_request_from_proto",
    "forward_backward_request_to_proto",
    "forward_backward_sequence_key",
    "sample_response_from_proto",
    "sample_response_to_proto",
    "zstd_compress",
]
