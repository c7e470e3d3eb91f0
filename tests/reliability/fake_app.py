"""The web layer around the fake engine, for reliability tests that need no real compute."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from server_stub.app import create_app
from server_stub.config import ServerConfig
from tests.server.web.web_fake_engine import BASE_MODEL, FakeEngine

API = "/api/v1"


@contextlib.contextmanager
def fake_client(storage: Path, engine: FakeEngine | None = None, **settings: Any) -> Iterator[TestClient]:
    config = ServerConfig(
        storage_dir=storage, long_poll_seconds=1.0, sample_batch_window_seconds=0.0, **settings
    )
    fake = engine or FakeEngine()
    try:
        # A server error is answered (500), not raised into the test: tests check what clients see.
        with TestClient(create_app(fake, config), raise_server_exceptions=False) as client:
            yield client
    finally:
        fake.release()


def ok(client: TestClient, path: str, body: Any) -> dict[str, Any]:
    response = client.post(API + path, json=body)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def result(client: TestClient, future: dict[str, Any]) -> dict[str, Any]:
    for _ in range(600):
        answer = ok(client, "/retrieve_future", {"request_id": future["request_id"]})
        if answer.get("type") != "try_again":
            return answer
    raise AssertionError(f"request {future['request_id']} never finished")


_MODEL_SEQ_IDS = itertools.count()


def new_model(client: TestClient, session_id: str = "s", model_seq_id: int | None = None) -> str:
    """A new model (each call its own model_seq_id unless one is given: a repeated one is a retry)."""
    model_seq_id = next(_MODEL_SEQ_IDS) if model_seq_id is None else model_seq_id
    body = {
        "session_id": session_id,
        "model_seq_id": model_seq_id,
        "base_model": BASE_MODEL,
        "lora_config": {"rank": 1},
    }
    return result(client, ok(client, "/create_model", body))["model_id"]


def datum(length: int) -> dict[str, Any]:
    tokens = [1 + i % 10 for i in range(length)]
    return {
        "model_input": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": tokens, "dtype": "int64", "shape": [length]},
            "weights": {"data": [1.0] * length, "dtype": "float32", "shape": [length]},
        },
    }


def fwd_bwd(model_id: str, seq_id: int, data: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "seq_id": seq_id,
        "forward_backward_input": {"data": data or [datum(4)], "loss_fn": "cross_entropy"},
    }
