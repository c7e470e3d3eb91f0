"""A real role_colon renderer over a locally trained tokenizer, shared by the supervised tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook.renderers import Renderer, get_renderer
from cookbook.tokenizer_utils import Tokenizer, get_tokenizer
from tests.renderers.chat_tokenizers import write_tokenizer_dir


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer_dir("plain", tmp_path_factory.mktemp("supervised-tokenizer"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Tokenizer:
    return get_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="session")
def renderer(tokenizer: Tokenizer) -> Renderer:
    return get_renderer("role_colon", tokenizer)
