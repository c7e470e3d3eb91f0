"""Tokenizers for every chat format, trained once per test session."""

from __future__ import annotations

import pytest

from cookbook.tokenizer_utils import Tokenizer, get_tokenizer
from tests.renderers.chat_tokenizers import FORMATS, write_tokenizer_dir


@pytest.fixture(scope="session")
def tokenizers_by_kind(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tokenizer]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {kind: get_tokenizer(str(write_tokenizer_dir(kind, root))) for kind in FORMATS}
