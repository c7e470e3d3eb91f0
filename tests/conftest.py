"""Suite-wide settings that must be in place before torch or the hub libraries are imported."""

from __future__ import annotations

import os

# Tests run engines in this process beside server children on few cores, and none checks speed:
# idle OpenMP workers sleep at once here (the server's own default spins briefly, server_stub/device.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test may reach the Hugging Face Hub (there is no network); fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TINKER_TELEMETRY", "0")


# One bundled server for the whole suite: starting one costs seconds, and every test that talks to
# a server uses its own model ids, run names and log dirs. Tests that need a server of their own
# (restarts, other flags, a dedicated storage dir) start one themselves.
from collections.abc import Iterator

import pytest

# Imported for what it sets before the suite's first matmul (server_stub/device.py): tests compare bits
# across thread counts.
import server_stub  # noqa: F401
from cookbook.client.abstract import ServiceClient
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.tokenizer_utils import Tokenizer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("shared-server-storage")) as running:
        yield running


@pytest.fixture(scope="session")
def service(server: LocalServer) -> Iterator[ServiceClient]:
    client = HttpServiceClient(server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def builtin_tokenizer() -> Tokenizer:
    """The server's built-in "tiny-llama" tokenizer, as a client receives it (tokenizer.json + EOS)."""
    from server_stub.models.builtin_tokenizer import EOS_TOKEN, builtin_tokenizer_json

    return Tokenizer.from_json_str(
        builtin_tokenizer_json(), name_or_path="tiny-llama", eos_token=EOS_TOKEN, pad_token=EOS_TOKEN
    )
