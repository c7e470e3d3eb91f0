"""zstd request bodies: decoded within a size bound; other encodings are refused."""

from __future__ import annotations

import pytest

from cookbook.client.proto import decode_content, zstd_compress, zstd_decompress


def test_round_trip_and_identity() -> None:
    body = b"tokens " * 1000
    assert decode_content(zstd_compress(body), "zstd", max_bytes=10_000) == body
    assert decode_content(body, None, max_bytes=10) == body
    assert decode_content(body, "identity", max_bytes=10) == body


def test_bounds_and_bad_input() -> None:
    with pytest.raises(ValueError, match="inflates past"):
        zstd_decompress(zstd_compress(b"\0" * 100_000), max_bytes=1000)
    with pytest.raises(ValueError, match="not valid zstd"):
        zstd_decompress(b"plain text", max_bytes=1000)
    with pytest.raises(ValueError, match="Content-Encoding"):
        decode_content(b"x", "gzip", max_bytes=10)
