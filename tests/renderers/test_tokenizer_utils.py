"""get_tokenizer: registered tokenizers, local Hugging Face directories, the server, the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cookbook.client.errors import APIConnectionError, NotFoundError
from cookbook.tokenizer_utils import (
    Tokenizer,
    TokenizerNotFoundError,
    find_tokenizer,
    get_tokenizer,
    register_tokenizer,
)
from tests.renderers.chat_tokenizers import write_tokenizer_dir


class TokenizerServer:
    """The tokenizer half of a ServiceClient, isolating get_tokenizer from HTTP (the real
    client is tested against the real server in tests/client)."""

    def __init__(self, tokenizers: dict[str, Tokenizer], error: Exception | None = None):
        self.tokenizers = tokenizers
        self.error = error
        self.calls: list[str] = []

    def get_tokenizer(self, base_model: str) -> Tokenizer:
        self.calls.append(base_model)
        if self.error is not None:
            raise self.error
        return self.tokenizers[base_model]


def test_local_directory_is_loaded_with_its_special_tokens_and_cached(tmp_path: Path) -> None:
    directory = write_tokenizer_dir("llama3", tmp_path)
    tok = get_tokenizer(str(directory))
    assert tok.bos_token == "<|begin_of_text|>" and tok.eos_token == "<|end_of_text|>"
    assert tok.convert_tokens_to_ids("<|eot_id|>") is not None
    shutil.rmtree(directory)
    assert get_tokenizer(str(directory)) is tok  # cached per name: the files are not read again


def test_directory_without_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(TokenizerNotFoundError, match=r"is a directory but has no tokenizer\.json"):
        get_tokenizer(str(tmp_path))


def test_registered_tokenizer_wins(tmp_path: Path) -> None:
    first = get_tokenizer(str(write_tokenizer_dir("plain", tmp_path)))
    second = Tokenizer.from_json_str(first.to_json_str(), name_or_path="custom")
    register_tokenizer("test-custom-model", first)
    assert get_tokenizer("test-custom-model") is first
    register_tokenizer("test-custom-model", second)
    assert get_tokenizer("test-custom-model") is second


def test_fetched_from_the_server_once(tmp_path: Path) -> None:
    served = get_tokenizer(str(write_tokenizer_dir("chatml", tmp_path)))
    server = TokenizerServer({"test-served-model": served})
    assert find_tokenizer("test-served-model") is None  # nothing local, and no server asked
    assert get_tokenizer("test-served-model", server) is served  # type: ignore[arg-type]
    assert get_tokenizer("test-served-model", server) is served  # type: ignore[arg-type]
    assert get_tokenizer("test-served-model") is served  # cached: later callers need no client
    assert server.calls == ["test-served-model"]


def test_unknown_model_errors() -> None:
    with pytest.raises(TokenizerNotFoundError, match="no service client was given"):
        get_tokenizer("test-unknown-model")
    refusing = TokenizerServer({}, NotFoundError("unknown base model", status_code=404))
    with pytest.raises(TokenizerNotFoundError, match=r"the server refused it .*unknown base model") as info:
        get_tokenizer("test-unknown-model", refusing)  # type: ignore[arg-type]
    assert isinstance(info.value.__cause__, NotFoundError)
    # A server that cannot be reached is not "no such tokenizer": that error stays as it is.
    unreachable = TokenizerServer({}, APIConnectionError("connection refused"))
    with pytest.raises(APIConnectionError):
        get_tokenizer("test-unknown-model", unreachable)  # type: ignore[arg-type]
