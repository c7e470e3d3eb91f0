"""Fixtures for the client tests: a fake server behind httpx.MockTransport, a clean environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cookbook.client.http import HttpServiceClient, RetryPolicy
from cookbook.client.http.settings import API_KEY_ENV_VARS, BASE_URL_ENV_VARS
from cookbook.client.local_server import LocalServer

from .fake_server import FakeServer

FAST_RETRY = RetryPolicy(max_retries=5, initial_delay_s=0.001, max_delay_s=0.01, max_total_s=30.0)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*BASE_URL_ENV_VARS, *API_KEY_ENV_VARS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture
def service(fake: FakeServer) -> Iterator[HttpServiceClient]:
    client = HttpServiceClient("http://fake.test", retry=FAST_RETRY, transport=fake.transport())
    yield client
    client.close()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The real server (`python -m server_stub`, tiny model) on a free loopback port, per module."""
    server = LocalServer(tmp_path_factory.mktemp("server-storage"), api_key=None)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def real_service(real_server: LocalServer) -> Iterator[HttpServiceClient]:
    client = HttpServiceClient(real_server.url)
    yield client
    client.close()
