"""The built-in tokenizer: deterministic bytes, vocabulary shape, the tokens the pipeline relies on."""

from __future__ import annotations

import json
import subprocess
import sys

from tokenizers import Tokenizer

from server_stub.models.builtin_tokenizer import BUILTIN_VOCAB_SIZE, EOS_TOKEN, _train, builtin_tokenizer_json
from server_stub.models.token_bytes import token_bytes_table
from server_stub.models.tokenizer_corpus import corpus_lines


def test_training_is_deterministic_in_process_and_across_processes() -> None:
    first, second = _train().to_str(), _train().to_str()
    assert first == second == builtin_tokenizer_json()
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from server_stub.models.builtin_tokenizer import builtin_tokenizer_json as f;"
            "import hashlib; print(hashlib.sha256(f().encode()).hexdigest())",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    import hashlib

    assert other == hashlib.sha256(first.encode()).hexdigest()


def test_corpus_is_deterministic_and_covers_the_formats() -> None:
    lines = corpus_lines()
    assert lines == corpus_lines()
    text = "\n".join(lines)
    for needle in (
        "User: ",
        "\n\nAssistant: ",
        "System: ",
        "\n\nHuman: ",
        "==== Completion A ====",
        "==== Completion B ====",
        "==== Preference ====",
        " plus ",
        " minus ",
        " times ",
        "Paris",
        "Sure!",
        "Of course!",
        "Happy to help!",
        "Ugh, fine.",
        "Whatever.",
        "Obviously,",
        "1. ",
        "100",
    ):
        assert needle in text, needle


def test_vocabulary_and_special_tokens(tok: Tokenizer) -> None:
    assert tok.get_vocab_size() == BUILTIN_VOCAB_SIZE
    assert tok.token_to_id(EOS_TOKEN) == 0
    spec = json.loads(builtin_tokenizer_json())
    assert spec["post_processor"] is None  # no BOS is ever added
    assert tok.encode("Hello").ids == tok.encode("Hello", add_special_tokens=True).ids


def test_comparison_labels_are_single_tokens(tok: Tokenizer) -> None:
    assert len(tok.encode(" A").ids) == 1
    assert len(tok.encode(" B").ids) == 1
    assert tok.encode(" A").ids != tok.encode(" B").ids


def test_round_trip_and_compression(tok: Tokenizer) -> None:
    text = "User: What is 3 plus 4?\n\nAssistant: Sure! 3 plus 4 is 7.\n\nUser:"
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2  # common words are merged, not spelled out byte by byte


def test_token_bytes_match_decoding(tok: Tokenizer) -> None:
    table = token_bytes_table(builtin_tokenizer_json())
    text = "Héllo wörld! 3 times 4 is 12.\n\nUser: ✓"
    ids = tok.encode(text).ids
    assert b"".join(table[i] for i in ids).decode("utf-8") == text
