"""A forward or forward_backward call, whichever route and body format it came in.

SDK 0.24 sends `/forward` and `/forward_backward` as JSON; SDK 0.38 sends both as a protobuf
`ForwardBackwardRequest` to `/forward_backward`, with `forward_only` standing in for `/forward`.
Each decodes to one `TrainingPass`, which names its fields the way its body spelled them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cookbook.client import types
from server_stub import sequence_key, validation
from server_stub.engine import ModelLimits
from server_stub.request_body import ReceivedBody
from server_stub.sequence_key import SequenceKey

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class TrainingPass:
    model_id: str
    seq_id: int | None
    fwd: types.ForwardBackwardInput
    backward: bool
    where: str  # the path of `fwd`'s fields in the body ("" when they sit at its top level)

    def check(self, limits: ModelLimits) -> None:
        validation.check_forward_backward_input(self.fwd, limits, self.where)


@dataclass(frozen=True)
class PassFormat:
    """How one route reads one body format: the decoder, and the key reader for a refused body."""

    decode: Callable[[bytes], TrainingPass]
    key_of_refused: Callable[[ReceivedBody], SequenceKey | None]


def _from_json_forward_backward(raw: bytes) -> TrainingPass:
    req = validation.parse_wire(raw, types.ForwardBackwardRequest)
    return TrainingPass(req.model_id, req.seq_id, req.forward_backward_input, True, "forward_backward_input")


def _from_json_forward(raw: bytes) -> TrainingPass:
    req = validation.parse_wire(raw, types.ForwardRequest)
    return TrainingPass(req.model_id, req.seq_id, req.forward_input, False, "forward_input")


def is_protobuf(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == PROTOBUF


def pass_format(content_type: str | None, forward_only_route: bool) -> PassFormat:
    """The reader for a body of `content_type` sent to /forward (`forward_only_route`) or /forward_backward."""
    if is_protobuf(content_type):
        raise NotImplementedError
    return PassFormat(
        _from_json_forward if forward_only_route else _from_json_forward_backward, sequence_key.from_json
    )
