"""zstd request bodies: the client writes one frame that any zstd reader inflates to the body."""

from __future__ import annotations

import zstandard

from cookbook.client.proto import zstd_compress


def test_a_compressed_body_inflates_to_itself_and_states_its_size() -> None:
    body = b"tokens " * 1000
    frame = zstd_compress(body)
    assert len(frame) < len(body)
    assert zstandard.frame_content_size(frame) == len(body)
    assert zstandard.ZstdDecompressor().decompress(frame) == body
