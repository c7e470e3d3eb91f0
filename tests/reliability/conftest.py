"""Fixtures for the reliability suite: the real engine behind an app that two tenants share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server_stub.app import create_app
from server_stub.config import ServerConfig
from server_stub.torch_engine import TorchEngine

API = "/api/v1"
BASE_MODEL = "tiny-llama"
KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789"}


@dataclass
class Tenant:
    """One tenant's view of a shared app: every request carries its key."""

    name: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": KEYS[self.name]}

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.client.request(method, path, headers=self.headers, **kwargs)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.request("POST", API + path, body)

    def ok(self, path: str, body: Any = None) -> dict[str, Any]:
        response = self.post(path, body)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def result(self, future: dict[str, Any]) -> dict[str, Any]:
        for _ in range(600):
            answer = self.ok("/retrieve_future", {"request_id": future["request_id"]})
            if answer.get("type") != "try_again":
                return answer
        raise AssertionError(f"request {future['request_id']} never finished")


def write_keys(path: Path) -> Path:
    path.write_text("".join(f"{tenant} {key}\n" for tenant, key in KEYS.items()))
    return path


@pytest.fixture(scope="module")
def torch_engine(tmp_path_factory: pytest.TempPathFactory) -> TorchEngine:
    return TorchEngine(tmp_path_factory.mktemp("storage"), device="cpu")


@pytest.fixture(scope="module")
def shared_client(
    torch_engine: TorchEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One live app (one event loop): each tenant's requests differ only in the key they carry."""
    keys = write_keys(tmp_path_factory.mktemp("keys") / "keys.txt")
    config = ServerConfig(storage_dir=torch_engine.layout.root, keys_file=keys, long_poll_seconds=2.0)
    with TestClient(create_app(torch_engine, config)) as client:
        yield client


@pytest.fixture(scope="module")
def shared_app(shared_client: TestClient) -> FastAPI:
    app = shared_client.app
    assert isinstance(app, FastAPI)
    return app


@pytest.fixture(scope="module")
def alice(shared_client: TestClient) -> Tenant:
    return Tenant("alice", shared_client)


@pytest.fixture(scope="module")
def bob(shared_client: TestClient) -> Tenant:
    return Tenant("bob", shared_client)


def datum(tokens: list[int]) -> dict[str, Any]:
    n = len(tokens)
    return {
        "model_input": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": tokens, "dtype": "int64", "shape": [n]},
            "weights": {"data": [1.0] * n, "dtype": "float32", "shape": [n]},
        },
    }


def fwd_bwd(model_id: str, seq_id: int, data: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "seq_id": seq_id,
        "forward_backward_input": {"data": data or [datum([5, 6, 7, 8])], "loss_fn": "cross_entropy"},
    }


def create_model_body(session_id: str | None, model_seq_id: int = 0) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "model_seq_id": model_seq_id,
        "base_model": BASE_MODEL,
        "lora_config": {"rank": 4},
    }
