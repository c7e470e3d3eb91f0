"""`Content-Encoding: zstd` request bodies, which the client sends when the server's client config asks.

The server decodes them (server_stub/request_body.py, with its size limit and a check that the
last frame is whole); the client never receives zstd.
"""

from __future__ import annotations

import zstandard

ZSTD = "zstd"


def zstd_compress(body: bytes, level: int = 3) -> bytes:
    """One zstd frame holding `body` (its size is written in the frame header)."""
    return zstandard.ZstdCompressor(level=level).compress(body)
