"""Reading bodies (limits, zstd), the model/seq id of a refused body, and Accept negotiation, as units."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest
import zstandard

from server_stub.engine import UserError
from server_stub.request_body import KEPT_BYTES, ReceivedBody, receive
from server_stub.result_formats import JSON, PROTOBUF, accepts
from server_stub.sequence_key import from_json, of_refused

from .web_wire import proto_fwd_bwd


def _read(body: bytes, limit: int, encoding: str | None = None, chunk: int = 1000) -> ReceivedBody:
    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    return asyncio.run(receive(stream(), "application/json", encoding, limit))


def test_a_body_within_the_limit_is_read_whole() -> None:
    received = _read(b"x" * 5000, limit=5000)
    assert received.accepted() == b"x" * 5000 and received.refusal is None and not received.protobuf


def test_a_body_over_the_limit_keeps_both_ends() -> None:
    body = os.urandom(3 * KEPT_BYTES)
    received = _read(body, limit=KEPT_BYTES + 10)
    assert received.refusal is not None and received.refusal.status_code == 413
    assert received.content == body[:KEPT_BYTES] and received.tail == body[-KEPT_BYTES:]
    with pytest.raises(UserError, match="over this server's limit"):
        received.accepted()


def test_zstd_bodies_are_inflated_within_the_limit() -> None:
    body = b'{"a": 1}' * 1000
    assert (
        _read(zstandard.ZstdCompressor().compress(body), limit=len(body), encoding="zstd").accepted() == body
    )
    two_frames = zstandard.ZstdCompressor().compress(b"ab") + zstandard.ZstdCompressor().compress(b"cd")
    assert _read(two_frames, limit=100, encoding="ZSTD").accepted() == b"abcd"
    bomb = _read(zstandard.ZstdCompressor().compress(b"\0" * 10**7), limit=10**6, encoding="zstd")
    assert bomb.refusal is not None and bomb.refusal.status_code == 413 and bomb.content == b"\0" * KEPT_BYTES


def test_a_broken_zstd_body_is_refused_and_keeps_what_did_inflate() -> None:
    body = os.urandom(400_000)  # incompressible: the frame is several raw blocks
    compressed = zstandard.ZstdCompressor().compress(body)
    cut = _read(compressed[:-1000], limit=10**6, encoding="zstd")
    assert cut.refusal is not None and "middle of a frame" in cut.refusal.message
    assert cut.content and body.startswith(cut.content)
    garbage = _read(b"not zstd at all", limit=100, encoding="zstd")
    assert garbage.refusal is not None and "zstd" in garbage.refusal.message
    other = _read(b"{}", limit=100, encoding="gzip")
    assert other.refusal is not None and other.refusal.status_code == 415


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"model_id": "m", "seq_id": 3, "x": ' + DEEP + "}", ("m", 3)),
        ('{"x": ' + DEEP + ', "model_id": "m", "seq_id": 3}', ("m", 3)),
        ('{"x": {"seq_id": 9, "model_id": "n"}, "model_id": "m", "seq_id": 3, "y": ' + DEEP + "}", ("m", 3)),
        ('{"y": ' + DEEP + ', "x": {"seq_id": 9, "model_id": "n"}, "model_id": "m", "seq_id": 3}', ("m", 3)),
        (
            '{"s": "a \\" } ] , \\"seq_id\\": 8", "model_id": "m\\u00e9", "seq_id": "4", "x": ' + DEEP + "}",
            ("m\u00e9", 4),
        ),
        ('{"x": ' + DEEP + ', "s": "\\\\", "model_id": "m", "seq_id": 5.0}', ("m", 5)),
        ('{"model_id": "m", "seq_id": 6, "forward_backward_input": {"data": [', ("m", 6)),
        ('{"model_id": "m", "forward_backward_input": {"seq_id": 6}}', None),
        ('{"model_id": 7, "seq_id": 6, "x": ' + DEEP + "}", None),
        ('{"model_id": "m", "seq_id": "six"}', None),
        ("[1, 2, 3]", None),
        ("", None),
    ],
)
def test_the_key_of_a_refused_json_body(text: str, key: tuple[str, int] | None) -> None:
    assert from_json(ReceivedBody(text.encode(), UserError("refused"))) == key


def test_the_key_of_a_body_cut_at_the_limit_is_read_from_its_end() -> None:
    body = json.dumps(
        {"forward_backward_input": {"data": [1] * 100_000}, "model_id": "m", "seq_id": 2}
    ).encode()
    received = _read(body, limit=KEPT_BYTES)
    assert received.refusal is not None and from_json(received) == ("m", 2)


def test_a_protobuf_body_is_walked_and_a_mislabelled_one_read_as_json() -> None:
    proto_body = proto_fwd_bwd("m", 5)[:-3]
    assert of_refused(ReceivedBody(proto_body, UserError("cut"), protobuf=True)) == ("m", 5)
    json_body = b'{"model_id": "m", "seq_id": 4, "x": ' + DEEP.encode() + b"}"
    assert of_refused(ReceivedBody(json_body, UserError("deep"), protobuf=True)) == ("m", 4)
    assert of_refused(ReceivedBody(proto_body, UserError("cut"))) is None  # read as JSON only


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        (PROTOBUF, True),
        ("application/x-protobuf, application/json", True),
        (f"{JSON}, {PROTOBUF};q=0.5", True),
        (f"{PROTOBUF};q=0, {JSON}", False),
        (JSON, False),
        ("*/*", False),
        (None, False),
    ],
)
def test_accept_lists_protobuf(accept: str | None, protobuf: bool) -> None:
    assert accepts(accept, PROTOBUF) is protobuf
