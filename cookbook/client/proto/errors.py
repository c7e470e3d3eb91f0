"""The error every protobuf decoder raises: what is wrong, and where in the message."""

from __future__ import annotations


class ProtobufDecodeError(ValueError):
    """A protobuf body that does not parse or does not make sense; `field` names the place."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
