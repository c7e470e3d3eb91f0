"""Fixtures for the engine tests: a TorchEngine on a temp dir and the tiny model's tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from server_stub.torch_engine import TorchEngine


@pytest.fixture
def engine(tmp_path: Path) -> TorchEngine:
    return TorchEngine(tmp_path / "storage", device="cpu")


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    from server_stub.models.builtin_tokenizer import builtin_tokenizer

    return builtin_tokenizer()


@pytest.fixture
def encode(tok: Tokenizer) -> Callable[[str], list[int]]:
    return lambda text: tok.encode(text).ids
