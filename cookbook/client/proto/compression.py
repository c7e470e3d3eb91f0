"""`Content-Encoding: zstd` bodies: compress, and decompress with a bound on the result."""

from __future__ import annotations

import zstandard

ZSTD = "zstd"
IDENTITY_ENCODINGS = frozenset({"", "identity"})


def zstd_compress(body: bytes, level: int = 3) -> bytes:
    """One zstd frame holding `body` (its size is written in the frame header)."""
    return zstandard.ZstdCompressor(level=level).compress(body)


def zstd_decompress(body: bytes, max_bytes: int) -> bytes:
    """The bytes inside a zstd body; ValueError if it is not zstd or inflates past `max_bytes`."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(body) as reader:
            inflated = reader.read(max_bytes + 1)
    except zstandard.ZstdError as exc:
        raise ValueError(f"the body is not valid zstd: {exc}") from exc
    if len(inflated) > max_bytes:
        raise ValueError(f"the zstd body inflates past {max_bytes} bytes")
    return inflated


def decode_content(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """A request body after its `Content-Encoding` (none, identity or zstd) is undone."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in IDENTITY_ENCODINGS:
        return body
    if encoding == ZSTD:
        return zstd_decompress(body, max_bytes)
    raise ValueError(f"unsupported Content-Encoding {content_encoding!r} (this server reads zstd or none)")
