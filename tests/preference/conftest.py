"""Shared fixtures: the built-in model's tokenizer and renderer, and one real server per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook.preference import ComparisonRendererFromChatRenderer
from cookbook.renderers import Renderer, get_renderer
from cookbook.tokenizer_utils import Tokenizer

BUILTIN = "tiny-llama"
HH_FILE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)


@pytest.fixture(scope="session")
def tokenizer(builtin_tokenizer: Tokenizer) -> Tokenizer:
    return builtin_tokenizer


@pytest.fixture(scope="session")
def renderer(tokenizer: Tokenizer) -> Renderer:
    return get_renderer("role_colon", tokenizer)


@pytest.fixture(scope="session")
def comparison_renderer(renderer: Renderer) -> ComparisonRendererFromChatRenderer:
    return ComparisonRendererFromChatRenderer(renderer)
