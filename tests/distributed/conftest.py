"""A 2-rank server (gloo, 2 CPU processes) and a 1-rank server on one storage dir, so checkpoints cross."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

# Generous: both servers share 2 busy CPU cores with the rest of the suite.
STARTUP_TIMEOUT_S = 300.0


@pytest.fixture(scope="package")
def shared_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distributed-storage")


@pytest.fixture(scope="package")
def two_ranks(shared_storage: Path) -> Iterator[HttpServiceClient]:
    with LocalServer(
        shared_storage, extra_args=["--ranks", "2"], startup_timeout_s=STARTUP_TIMEOUT_S
    ) as server:
        client = HttpServiceClient(server.url)
        yield client
        client.close()


@pytest.fixture(scope="package")
def one_rank(shared_storage: Path) -> Iterator[HttpServiceClient]:
    with LocalServer(shared_storage, startup_timeout_s=STARTUP_TIMEOUT_S) as server:
        client = HttpServiceClient(server.url)
        yield client
        client.close()
