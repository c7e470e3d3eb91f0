"""Reading a request body: a size limit, zstd `Content-Encoding`, and what is kept of a refused body.

Every route reads its body through `receive`. A body over the limit (after decompression) or one
that does not decompress is refused, but the reader still keeps the body's first and last bytes:
a refused training call must give back the seq id it carried (see `sequence_key.py`), and a
client writes its model and seq id at one end of the body or the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, replace

import zstandard

from cookbook.client.proto import PROTOBUF_CONTENT_TYPE
from server_stub.engine import UserError

KEPT_BYTES = 64 * 1024  # of each end of a refused body
ZSTD_SLICE = 1024  # compressed bytes fed per step, so one step's output stays small next to the limit


class PayloadTooLargeError(UserError):
    status_code = 413


class UnsupportedMediaError(UserError):
    """A body in a Content-Type or Content-Encoding this route does not read."""

    status_code = 415


@dataclass(frozen=True)
class ReceivedBody:
    """A body as read: whole when `refusal` is None; else its kept ends and why it was refused."""

    content: bytes
    refusal: UserError | None = None
    tail: bytes = b""  # the last bytes of a body refused for its size (its start is in `content`)
    protobuf: bool = False  # its Content-Type says protobuf (else it is read as JSON)

    def accepted(self) -> bytes:
        """The whole body; raises the refusal when there is one."""
        if self.refusal is not None:
            raise self.refusal
        return self.content


class _Ends:
    """The first and last KEPT_BYTES of a stream too long to keep."""

    def __init__(self, start: bytes) -> None:
        self.head = start[:KEPT_BYTES]
        self.tail = start[-KEPT_BYTES:]
        self.size = len(start)

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.tail = (self.tail + chunk)[-KEPT_BYTES:]


async def _read(stream: AsyncIterable[bytes], limit: int) -> tuple[bytes, _Ends | None]:
    """The whole stream, or (when longer than `limit`) its two ends; the rest is read and dropped."""
    parts: list[bytes] = []
    size = 0
    ends: _Ends | None = None
    async for chunk in stream:
        if ends is not None:
            ends.add(chunk)
            continue
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            ends = _Ends(b"".join(parts))
            parts = []
    return b"".join(parts), ends


def _too_large(what: str, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what} is over this server's limit of {limit} bytes (--max-request-bytes)", field="body"
    )


def _unzstd(data: bytes, limit: int) -> ReceivedBody:
    """Decompress zstd frames; a corrupt, cut or oversized body keeps the start that did decompress."""
    out = bytearray()
    remaining = memoryview(data)
    while remaining:
        frame = zstandard.ZstdDecompressor().decompressobj()
        used = 0
        try:
            while not frame.eof and used < len(remaining):
                out += frame.decompress(remaining[used : used + ZSTD_SLICE])
                used += ZSTD_SLICE
                if len(out) > limit:
                    return ReceivedBody(bytes(out[:KEPT_BYTES]), _too_large("the decompressed body", limit))
        except zstandard.ZstdError as exc:
            return ReceivedBody(
                bytes(out), UserError(f"body does not decompress as zstd: {exc}", field="body")
            )
        if not frame.eof:
            return ReceivedBody(
                bytes(out), UserError("zstd body ends in the middle of a frame", field="body")
            )
        remaining = memoryview(frame.unused_data + bytes(remaining[used:]))
    return ReceivedBody(bytes(out))


def is_protobuf(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == PROTOBUF_CONTENT_TYPE


async def receive(
    stream: AsyncIterable[bytes], content_type: str | None, content_encoding: str | None, limit: int
) -> ReceivedBody:
    """Read a body of at most `limit` bytes (compressed and decompressed) in `content_encoding`."""
    data, ends = await _read(stream, limit)
    encoding = (content_encoding or "identity").strip().lower()
    if ends is not None:
        refusal = _too_large(f"the body ({ends.size} bytes)", limit)
        if encoding == "zstd":  # only the start of a compressed body can be read back
            received = ReceivedBody(_unzstd(ends.head, limit).content, refusal)
        else:
            received = ReceivedBody(ends.head, refusal, ends.tail)
    elif encoding == "identity":
        received = ReceivedBody(data)
    elif encoding == "zstd":
        received = _unzstd(data, limit)
    else:
        received = ReceivedBody(
            b"",
            UnsupportedMediaError(
                f"Content-Encoding {content_encoding!r} is not supported (send identity or zstd)",
                field="Content-Encoding",
            ),
        )
    return replace(received, protobuf=is_protobuf(content_type))
