"""Shared fixtures: the built-in model's tokenizer and renderer, and one real server per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cookbook.client.abstract import ServiceClient
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.preference import ComparisonRendererFromChatRenderer
from cookbook.renderers import Renderer, get_renderer
from cookbook.tokenizer_utils import Tokenizer

BUILTIN = "tiny-llama"
HH_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    from server_stub.models.builtin_tokenizer import EOS_TOKEN, builtin_tokenizer_json

    return Tokenizer.from_json_str(builtin_tokenizer_json(), name_or_path=BUILTIN, eos_token=EOS_TOKEN,
                                   pad_token=EOS_TOKEN)


@pytest.fixture(scope="session")
def renderer(tokenizer: Tokenizer) -> Renderer:
    return get_renderer("role_colon", tokenizer)


@pytest.fixture(scope="session")
def comparison_renderer(renderer: Renderer) -> ComparisonRendererFromChatRenderer:
    return ComparisonRendererFromChatRenderer(renderer)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("preference-storage")) as running:
        yield running


@pytest.fixture(scope="session")
def service(server: LocalServer) -> Iterator[ServiceClient]:
    client = HttpServiceClient(server.url)
    yield client
    client.close()
