"""A refused training call never stalls its model: whatever its body, the seq id it carried is released.

Each malformed body below is sent to every ordered route with the model's next seq id; the server
answers a 4xx with a JSON ErrorBody (never a 500), and a good call of the same model with the seq
id after it must then complete. The only time bound is a generous poll count against a hang.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from fastapi.testclient import TestClient

from cookbook.client.proto import schema

from .web_fake_engine import FakeEngine
from .web_wire import API, ORDERED_ROUTES, PROTOBUF, ce_datum, fwd_bwd, new_model, post_ok, proto_fwd_bwd

LIMIT = 16 * 1024  # the test server's --max-request-bytes
HANG_GUARD_POLLS = 240  # x the long-poll below: minutes, only reached if the queue stalls
DEEP = 1000
# Each route's main field, to hold the malformed part of a JSON body.
PAYLOAD = {
    "/forward": "forward_input",
    "/forward_backward": "forward_backward_input",
    "/optim_step": "adam_params",
    "/save_weights": "path",
    "/save_weights_for_sampler": "path",
    "/load_weights": "path",
}
Body = tuple[bytes, dict[str, str]]
JSON_HEADERS = {"content-type": "application/json"}
PROTO_HEADERS = {"content-type": PROTOBUF}


def _json(fields: dict[str, Any]) -> Body:
    return json.dumps(fields).encode(), JSON_HEADERS


def _deep_json(model: str, seq: int, route: str, keys_first: bool) -> Body:
    nested = "[" * DEEP + "]" * DEEP
    key = f'"model_id": {json.dumps(model)}, "seq_id": {seq}'
    payload = f'"{PAYLOAD[route]}": {nested}'
    return f"{{{key}, {payload}}}".encode() if keys_first else f"{{{payload}, {key}}}".encode(), JSON_HEADERS


def _proto_head(model: str, seq: int) -> bytes:
    return schema.ForwardBackwardRequest(model_id=model, seq_id=seq).SerializeToString()


def _proto_with_bad_tokens(model: str, seq: int) -> Body:
    message = schema.ForwardBackwardRequest(model_id=model, seq_id=seq, loss_fn="cross_entropy")
    message.data.add().model_input.add().encoded_text.tokens = b"\x01\x02\x03"  # not whole int32s
    return message.SerializeToString(), PROTO_HEADERS


def _too_large_proto(model: str, seq: int) -> bytes:
    return proto_fwd_bwd(model, seq, [ce_datum([1] * 8)] * (LIMIT // 16))


MALFORMED: dict[str, Callable[[str, int, str], Body]] = {
    "protobuf that does not parse": lambda m, s, r: (
        _proto_head(m, s) + b"\x1a\x03\xff\xff\xff",
        PROTO_HEADERS,
    ),
    "protobuf cut short": lambda m, s, r: (proto_fwd_bwd(m, s)[:-5], PROTO_HEADERS),
    "protobuf with bad token bytes": lambda m, s, r: _proto_with_bad_tokens(m, s),
    "JSON nested 1000 deep, keys first": lambda m, s, r: _deep_json(m, s, r, keys_first=True),
    "JSON nested 1000 deep, keys last": lambda m, s, r: _deep_json(m, s, r, keys_first=False),
    "JSON with wrong types": lambda m, s, r: _json({"model_id": m, "seq_id": s, PAYLOAD[r]: [1, "two", {}]}),
    "JSON with the seq id as text": lambda m, s, r: _json({"model_id": m, "seq_id": str(s), PAYLOAD[r]: 7}),
    "JSON cut short": lambda m, s, r: (
        _json({"model_id": m, "seq_id": s, **fwd_bwd(m, s)})[0][:-9],
        JSON_HEADERS,
    ),
    "too large JSON, keys last": lambda m, s, r: _json({PAYLOAD[r]: "x" * LIMIT, "model_id": m, "seq_id": s}),
    "too large protobuf": lambda m, s, r: (_too_large_proto(m, s), PROTO_HEADERS),
    "zstd protobuf too large once inflated": lambda m, s, r: (
        zstandard.ZstdCompressor().compress(_too_large_proto(m, s)),
        {**PROTO_HEADERS, "content-encoding": "zstd"},
    ),
    "zstd JSON nested 1000 deep": lambda m, s, r: (
        zstandard.ZstdCompressor().compress(_deep_json(m, s, r, keys_first=False)[0]),
        {**JSON_HEADERS, "content-encoding": "zstd"},
    ),
}


@pytest.fixture
def limited(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(max_request_bytes=LIMIT, long_poll_seconds=0.5)


def completed(client: TestClient, request_id: str) -> dict[str, Any]:
    """The request's result, polling as a client does; only a stalled queue runs out of polls."""
    for _ in range(HANG_GUARD_POLLS):
        answer = post_ok(client, "/retrieve_future", {"request_id": request_id})
        if answer.get("type") != "try_again":
            return answer
    raise AssertionError(f"request {request_id} never finished: its model's queue is stalled")


def test_the_ordered_routes_are_the_ones_the_app_orders(limited: TestClient) -> None:
    assert tuple(limited.app.state.ordered_routes) == tuple(API + route for route in ORDERED_ROUTES)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", list(MALFORMED))
@pytest.mark.parametrize("route", ORDERED_ROUTES)
def test_a_refused_body_releases_its_seq_id(limited: TestClient, route: str, kind: str) -> None:
    model = new_model(limited, session_id=f"{route}-{kind}")
    content, headers = MALFORMED[kind](model, 1, route)
    refused = limited.post(API + route, content=content, headers=headers)
    assert 400 <= refused.status_code < 500, (refused.status_code, refused.text)
    error = refused.json()
    assert set(error) == {"error", "category", "field"} and error["category"] == "user" and error["error"]
    again = limited.post(API + route, content=content, headers=headers)  # a retry is refused the same way
    assert (again.status_code, again.json()) == (refused.status_code, error)
    follow_up = post_ok(limited, "/forward_backward", fwd_bwd(model, 2))
    assert "loss_fn_outputs" in completed(limited, follow_up["request_id"])


def test_a_refused_call_between_pipelined_ones_is_skipped_in_order(
    limited: TestClient, engine: FakeEngine
) -> None:
    model = new_model(limited)
    engine.hold()
    first = post_ok(limited, "/forward_backward", fwd_bwd(model, 1, [ce_datum([1, 2])]))
    engine.wait_for_calls(2)  # create_model, then seq 1 is running
    content, headers = MALFORMED["JSON nested 1000 deep, keys last"](model, 2, "/optim_step")
    assert limited.post(API + "/optim_step", content=content, headers=headers).status_code == 400
    third = post_ok(limited, "/forward_backward", fwd_bwd(model, 3, [ce_datum([3, 4])]))
    engine.release()
    for future in (first, third):
        assert "loss_fn_outputs" in completed(limited, future["request_id"])
    assert [(name, detail) for name, _, detail in engine.calls[1:]] == [
        ("forward_backward", 1),
        ("forward_backward", 3),
    ]


def test_bad_bodies_on_other_routes_are_4xx_too(limited: TestClient) -> None:
    deep = b'{"session_id": "s", "model_seq_id": 0, "base_model": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    for route in ("/create_model", "/asample", "/create_sampling_session", "/retrieve_future"):
        response = limited.post(API + route, content=deep, headers=JSON_HEADERS)
        assert response.status_code == 400 and response.json()["field"] == "body", (route, response.text)
        huge = limited.post(API + route, content=b"x" * (LIMIT + 1), headers=JSON_HEADERS)
        assert huge.status_code == 413 and "limit" in huge.json()["error"]
        encoded = limited.post(API + route, content=b"{}", headers={"content-encoding": "br"})
        assert encoded.status_code == 415 and encoded.json()["field"] == "Content-Encoding"
        typed = limited.post(API + route, content=b"\x0a\x01x", headers=PROTO_HEADERS)
        assert typed.status_code == 415 and typed.json()["field"] == "Content-Type"
