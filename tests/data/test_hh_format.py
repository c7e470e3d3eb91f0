"""hh-rlhf transcripts: rendering and parsing are inverse, on ours and on the real file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cookbook.data.hh_format import parse_transcript, render_transcript

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def test_round_trip() -> None:
    messages = [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 1 plus 1?"},
        {"role": "assistant", "content": "1 plus 1 is 2."},
    ]
    text = render_transcript(messages)
    assert (
        text == "\n\nHuman: Hi!\n\nAssistant: Hello!\n\nHuman: What is 1 plus 1?\n\nAssistant: 1 plus 1 is 2."
    )
    assert parse_transcript(text) == messages


def test_system_turns_and_bad_transcripts_are_rejected() -> None:
    with pytest.raises(ValueError, match="only hold user/assistant"):
        render_transcript([{"role": "system", "content": "Be nice."}])
    with pytest.raises(ValueError, match="must start with"):
        parse_transcript("Human: hi")


def test_parses_the_real_hh_rlhf_sample_like_ours() -> None:
    with gzip.open(REAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(50)]
    for row in rows:
        chosen = parse_transcript(row["chosen"])
        assert chosen[0]["role"] == "user" and chosen[-1]["role"] == "assistant"
        assert render_transcript(chosen) == row["chosen"]
