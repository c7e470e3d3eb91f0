"""Whose call a broken forward_backward body was: its model id and seq id, read without parsing it all.

A server must release the seq id of a call it rejects, or that model's later calls wait forever.
The official SDK writes `model_id` (field 1) and `seq_id` (field 2) first, so a scan of the
top-level fields finds them even when a later part of the body is cut off or corrupt.
"""

from __future__ import annotations

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_MODEL_ID_FIELD, _SEQ_ID_FIELD = 1, 2


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise ValueError("truncated varint")
        byte = raw[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def forward_backward_sequence_key(raw: bytes) -> tuple[str, int] | None:
    """(model_id, seq_id) of a protobuf ForwardBackwardRequest, or None if they cannot be read."""
    model_id: str | None = None
    seq_id: int | None = None
    pos = 0
    try:
        while pos < len(raw) and (model_id is None or seq_id is None):
            tag, pos = _varint(raw, pos)
            field, wire_type = tag >> 3, tag & 7
            if wire_type == _VARINT:
                value, pos = _varint(raw, pos)
                if field == _SEQ_ID_FIELD:
                    seq_id = value - (1 << 64) if value >= 1 << 63 else value  # int32 is sign-extended
            elif wire_type == _LENGTH_DELIMITED:
                size, pos = _varint(raw, pos)
                if pos + size > len(raw):
                    break
                if field == _MODEL_ID_FIELD:
                    model_id = raw[pos : pos + size].decode("utf-8")
                pos += size
            elif wire_type in (_FIXED64, _FIXED32):
                pos += 8 if wire_type == _FIXED64 else 4
            else:
                break
    except (ValueError, UnicodeDecodeError):
        pass
    if model_id is None or seq_id is None:
        return None
    return model_id, seq_id
