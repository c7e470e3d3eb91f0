"""The body formats a result can leave in: JSON always; protobuf for the results that have a codec.

`retrieve_future` answers protobuf when the client's `Accept` lists it and the result is one the
protobuf wire carries (`RESULT_CODECS`: training passes and samples); every other answer, and
`try_again` and errors, stay JSON. A result is first encoded on the compute thread in its natural
format (protobuf when it has a codec: both official SDKs and our binary-wire client ask for it),
and in the other one only if a client asks for that.
"""

from __future__ import annotations

from cookbook.client import types
from cookbook.client.proto import PROTOBUF_CONTENT_TYPE, RESULT_CODECS

JSON = "application/json"
PROTOBUF = PROTOBUF_CONTENT_TYPE
# What the capabilities route lists: the formats forward_backward bodies may come in.
WIRE_FORMATS = [types.WIRE_FORMAT_JSON, types.WIRE_FORMAT_PROTOBUF]


def natural_format(result: types.WireModel) -> str:
    return PROTOBUF if type(result) in RESULT_CODECS else JSON


def accepts(accept: str | None, media_type: str) -> bool:
    """Whether an `Accept` header lists `media_type` (with a non-zero q, when it gives one)."""
    for entry in (accept or "").split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        if name.lower() != media_type:
            continue
        weights = [param.partition("=")[2] for param in params if param.lower().startswith("q=")]
        try:
            return not weights or float(weights[0]) > 0
        except ValueError:
            return True
    return False


def answer_format(result: types.WireModel, accept: str | None) -> str:
    """The format to answer `result` in for a client that sent `accept`."""
    return PROTOBUF if natural_format(result) == PROTOBUF and accepts(accept, PROTOBUF) else JSON


def encode(result: types.WireModel, media_type: str) -> bytes:
    if media_type == PROTOBUF:
        return RESULT_CODECS[type(result)].encode(result)
    return result.model_dump_json(exclude_none=True).encode()
