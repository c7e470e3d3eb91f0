"""Request bodies and polling helpers shared by the web-layer tests (JSON as on the wire, and protobuf)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cookbook.client import proto, types

from .web_fake_engine import BASE_MODEL

API = "/api/v1"
PROTOBUF = proto.PROTOBUF_CONTENT_TYPE
# The routes whose calls run in their model's seq_id order.
ORDERED_ROUTES = (
    "/forward",
    "/forward_backward",
    "/optim_step",
    "/save_weights",
    "/save_weights_for_sampler",
    "/load_weights",
)


def ce_datum(tokens: list[int], weights: list[float] | None = None) -> dict[str, Any]:
    """A cross-entropy datum whose targets are the tokens themselves (valid, if not meaningful)."""
    n = len(tokens)
    return {
        "model_input": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": tokens, "dtype": "int64", "shape": [n]},
            "weights": {
                "data": weights if weights is not None else [1.0] * n,
                "dtype": "float32",
                "shape": [n],
            },
        },
    }


def rl_datum(tokens: list[int]) -> dict[str, Any]:
    n = len(tokens)
    return {
        "model_input": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": tokens, "dtype": "int64"},
            "logprobs": {"data": [-1.0] * n, "dtype": "float32"},
            "advantages": {"data": [0.5] * n, "dtype": "float32"},
        },
    }


def fwd_bwd(
    model_id: str,
    seq_id: int | None,
    data: list[dict[str, Any]] | None = None,
    loss_fn: str = "cross_entropy",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": model_id,
        "forward_backward_input": {"data": data or [ce_datum([1, 2, 3])], "loss_fn": loss_fn},
    }
    if seq_id is not None:
        body["seq_id"] = seq_id
    return body


def proto_fwd_bwd(
    model_id: str,
    seq_id: int,
    data: list[dict[str, Any]] | None = None,
    loss_fn: str = "cross_entropy",
    forward_only: bool = False,
) -> bytes:
    """The protobuf body SDK 0.38 sends to /forward_backward (a forward is `forward_only`)."""
    body = fwd_bwd(model_id, seq_id, data, loss_fn)
    if forward_only:
        body["forward_input"] = body.pop("forward_backward_input")
        return proto.forward_backward_request_to_proto(types.ForwardRequest.model_validate(body))
    return proto.forward_backward_request_to_proto(types.ForwardBackwardRequest.model_validate(body))


def post_proto(client: TestClient, path: str, body: bytes, **headers: str) -> dict[str, Any]:
    response = client.post(API + path, content=body, headers={"content-type": PROTOBUF, **headers})
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def optim(model_id: str, seq_id: int, lr: float = 0.1, **adam: float) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "seq_id": seq_id,
        "type": "optim_step",
        "adam_params": {"learning_rate": lr, **adam},
    }


def sample_body(sampler_id: str, prompt: list[int], **params: Any) -> dict[str, Any]:
    num_samples = params.pop("num_samples", 1)
    return {
        "sampling_session_id": sampler_id,
        "num_samples": num_samples,
        "type": "sample",
        "prompt": {"chunks": [{"tokens": prompt, "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 4, **params},
    }


def post_ok(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(API + path, json=body)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def poll(client: TestClient, request_id: str) -> dict[str, Any]:
    """One retrieve_future call (the server long-polls)."""
    return post_ok(client, "/retrieve_future", {"request_id": request_id})


def result(client: TestClient, request_id: str, max_polls: int = 400) -> dict[str, Any]:
    """Poll until the request is done; returns the success or failure JSON."""
    for _ in range(max_polls):
        answer = poll(client, request_id)
        if answer.get("type") != "try_again":
            return answer
    raise AssertionError(f"request {request_id} never finished")


def new_model(
    client: TestClient,
    rank: int = 0,
    base_model: str = BASE_MODEL,
    session_id: str = "s",
    model_seq_id: int = 0,
) -> str:
    future = post_ok(
        client,
        "/create_model",
        {
            "session_id": session_id,
            "model_seq_id": model_seq_id,
            "base_model": base_model,
            "lora_config": {"rank": rank},
        },
    )
    assert result(client, future["request_id"]) == {"model_id": future["model_id"], "type": "create_model"}
    return future["model_id"]


def new_sampler(client: TestClient, model_id: str, seq_id: int) -> str:
    future = post_ok(client, "/save_weights_for_sampler", {"model_id": model_id, "seq_id": seq_id})
    return result(client, future["request_id"])["sampling_session_id"]
