"""Fixtures for the web-layer tests: a fake engine and TestClients over the app built around it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server_stub.app import create_app
from server_stub.config import ServerConfig

from .web_fake_engine import FakeEngine


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.release()


@pytest.fixture
def make_client(engine: FakeEngine, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Build a live app (compute thread running) with short long-polls; overrides go to ServerConfig."""
    clients: list[TestClient] = []

    def make(engine_override: Any = None, **overrides: Any) -> TestClient:
        settings: dict[str, Any] = {
            "long_poll_seconds": 0.05,
            "sample_batch_window_seconds": 0.0,
            "storage_dir": tmp_path / "web-storage",  # the owners file lives there
        }
        settings.update(overrides)
        client = TestClient(create_app(engine_override or engine, ServerConfig(**settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    engine.release()
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
