"""Fixtures: the bundled server over HTTP and the same engine in this process, side by side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cookbook.client.http import HttpServiceClient
from cookbook.client.http.settings import API_KEY_ENV_VARS, BASE_URL_ENV_VARS
from cookbook.client.in_process import InProcessServer, InProcessServiceClient
from cookbook.client.local_server import LocalServer
from server_stub.config import ServerConfig


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*BASE_URL_ENV_VARS, *API_KEY_ENV_VARS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(
        tmp_path_factory.mktemp("http-storage"), extra_args=["--log-level", "warning"]
    ) as server:
        yield server


@pytest.fixture(scope="module")
def in_process_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    server = InProcessServer(ServerConfig(storage_dir=tmp_path_factory.mktemp("in-process-storage")))
    yield server
    server.close()


@pytest.fixture
def http(http_server: LocalServer) -> Iterator[HttpServiceClient]:
    client = HttpServiceClient(http_server.url)
    yield client
    client.close()


@pytest.fixture
def in_process(in_process_server: InProcessServer) -> InProcessServiceClient:
    return InProcessServiceClient(in_process_server)
