"""The model id and seq id of a forward_backward body are found even when the body is broken."""

from __future__ import annotations

import pytest

from cookbook.client import types
from cookbook.client.proto import forward_backward_request_to_proto, forward_backward_sequence_key, schema


def _body(seq_id: int) -> bytes:
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(list(range(50))), loss_fn_inputs={"weights": [1.0] * 50}
    )
    fwd = types.ForwardBackwardInput(data=[datum], loss_fn="cross_entropy")
    return forward_backward_request_to_proto(
        types.ForwardBackwardRequest(forward_backward_input=fwd, model_id="sess:train:0", seq_id=seq_id)
    )


def test_whole_and_truncated_bodies() -> None:
    raw = _body(7)
    assert forward_backward_sequence_key(raw) == ("sess:train:0", 7)
    assert forward_backward_sequence_key(raw[:20]) == ("sess:train:0", 7)
    assert forward_backward_sequence_key(raw[:20] + b"\xff" * 30) == ("sess:train:0", 7)


def test_fields_in_any_order_and_negative_seq_ids() -> None:
    reversed_fields = (
        schema.ForwardBackwardRequest(seq_id=-3).SerializeToString()
        + schema.ForwardBackwardRequest(model_id="m").SerializeToString()
    )
    assert forward_backward_sequence_key(reversed_fields) == ("m", -3)


@pytest.mark.parametrize(
    "raw", [b"", b"\xff\xff", b"\x0a\x05ab", b'{"model_id": "m", "seq_id": 1}', b"\x0a\x02\xff\xfe\x10\x01"]
)
def test_unreadable_bodies_give_none(raw: bytes) -> None:
    assert forward_backward_sequence_key(raw) is None
