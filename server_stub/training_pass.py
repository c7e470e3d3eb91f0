"""A forward or forward_backward call, whichever route and body format it came in.

SDK 0.24 sends `/forward` and `/forward_backward` as JSON; SDK 0.38 sends both as a protobuf
`ForwardBackwardRequest` to `/forward_backward`, with `forward_only` standing in for `/forward`.
Each decodes to one `TrainingPass`, which names its fields the way its body spelled them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from cookbook.client import proto, types
from server_stub import request_limits, validation
from server_stub.config import ServerConfig
from server_stub.engine import ModelLimits, UserError
from server_stub.request_body import ReceivedBody


@dataclass(frozen=True)
class TrainingPass:
    model_id: str
    seq_id: int | None
    fwd: types.ForwardBackwardInput
    backward: bool
    where: str  # the path of `fwd`'s fields in the body ("" when they sit at its top level)

    def check(self, limits: ModelLimits, config: ServerConfig, has_reward_head: bool) -> None:
        """Everything a training call must satisfy before it is queued (sizes, inputs, loss and head)."""
        request_limits.check_training_tokens(self.fwd, config, self.where)
        validation.check_forward_backward_input(self.fwd, limits, self.where)
        field = f"{self.where}.loss_fn" if self.where else "loss_fn"
        validation.check_reward_loss_call(
            self.fwd.loss_fn, self.backward, has_reward_head, self.model_id, field
        )


def _from_json_forward_backward(raw: bytes) -> TrainingPass:
    req = validation.parse_wire(raw, types.ForwardBackwardRequest)
    return TrainingPass(req.model_id, req.seq_id, req.forward_backward_input, True, "forward_backward_input")


def _from_json_forward(raw: bytes) -> TrainingPass:
    req = validation.parse_wire(raw, types.ForwardRequest)
    return TrainingPass(req.model_id, req.seq_id, req.forward_input, False, "forward_input")


def _from_protobuf(raw: bytes, forward_only_route: bool) -> TrainingPass:
    try:
        req = proto.forward_backward_request_from_proto(raw)
    except proto.ProtobufDecodeError as exc:
        if isinstance(exc.__cause__, ValidationError):  # the loss name or its settings
            raise validation.schema_error(exc.__cause__, "ForwardBackwardRequest") from None
        raise UserError(f"protobuf body: {exc}", field=exc.field or "body") from None
    except Exception as exc:  # whatever else a hostile message provokes is still the body's fault
        raise UserError(f"protobuf body does not decode: {type(exc).__name__}: {exc}", field="body") from None
    if isinstance(req, types.ForwardRequest):
        return TrainingPass(req.model_id, req.seq_id, req.forward_input, False, "")
    return TrainingPass(req.model_id, req.seq_id, req.forward_backward_input, not forward_only_route, "")


def decode(body: ReceivedBody, forward_only_route: bool) -> TrainingPass:
    """The call in a body sent to /forward (`forward_only_route`) or /forward_backward, JSON or protobuf."""
    raw = body.accepted()
    if body.protobuf:
        return _from_protobuf(raw, forward_only_route)
    return _from_json_forward(raw) if forward_only_route else _from_json_forward_backward(raw)
