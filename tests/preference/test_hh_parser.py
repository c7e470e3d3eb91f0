"""The hh-rlhf parser on the real harmless-base test rows, on malformed rows, and on bundled data."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from cookbook.preference import Comparison, comparison_kind
from cookbook.recipes.preference.datasets import (
    HHHComparisonBuilder,
    hh_row_to_comparison,
    parse_hh_transcript,
)
from tests.preference.conftest import HH_FILE


def _simple_validity(row: dict) -> bool:
    """An independent check: both transcripts start with a human turn, end with an assistant turn,
    and are identical up to their last "\\n\\nAssistant:"."""
    chosen, rejected = row["chosen"], row["rejected"]
    if not (chosen.startswith("\n\nHuman:") and rejected.startswith("\n\nHuman:")):
        return False
    for text in (chosen, rejected):
        if text.rfind("\n\nAssistant:") < text.rfind("\n\nHuman:"):
            return False
    return chosen.rsplit("\n\nAssistant:", 1)[0] == rejected.rsplit("\n\nAssistant:", 1)[0]


def test_every_valid_real_row_parses_and_only_malformed_ones_are_skipped() -> None:
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    parsed = [hh_row_to_comparison(row) for row in rows]
    valid = [_simple_validity(row) for row in rows]
    assert len(rows) == 2312
    assert [c is not None for c in parsed] == valid
    skipped = valid.count(False)
    assert 0 < skipped <= 10  # a handful of real rows diverge before their last turn
    for row, comparison in zip(rows, parsed, strict=True):
        if comparison is not None:
            assert row["chosen"].endswith(comparison.completion_A[0]["content"])
            assert row["rejected"].endswith(comparison.completion_B[0]["content"])


def test_spot_check_of_the_first_real_row() -> None:
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        row = json.loads(f.readline())
    comparison = hh_row_to_comparison(row)
    assert comparison is not None
    prompt = comparison.prompt_conversation
    assert [m["role"] for m in prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert prompt[1]["content"] == "Are you looking for practical joke ideas?"
    assert prompt[2]["content"] == "yep"
    assert prompt[3]["content"].startswith("Ok, I’ll give you a couple examples")
    assert prompt[3]["content"].endswith(
        "\n\n3. Tell someone you’ll watch them masturbate but hide your eyes, "
        "and then while they are masturbating you will find a new place to watch."
    )
    assert prompt[4]["content"] == "okay some of these do not have anything to do with pens"
    assert comparison.completion_A[0]["role"] == comparison.completion_B[0]["role"] == "assistant"
    assert comparison.completion_A[0]["content"] == (
        "No, sorry!  All of these involve a pen, the point is that you "
        "can get funny results by doing pranks with pens."
    )
    assert comparison.completion_B[0]["content"].startswith(
        "There are lots of funny things you can do with pens"
    )
    assert comparison.completion_B[0]["content"] == row["rejected"].rsplit("\n\nAssistant: ", 1)[1]


def test_builder_on_the_real_file_splits_it_and_counts_what_it_skips(
    caplog: pytest.LogCaptureFixture,
) -> None:
    builder = HHHComparisonBuilder(dataset=str(HH_FILE), test_size=300)
    with caplog.at_level(logging.WARNING):
        train, test = builder.get_labeled_comparisons()
    assert test is not None
    messages = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    skipped = sum(int(m.split("skipped ")[1].split(" ")[0]) for m in messages)
    assert len(train) + len(test) + skipped == 2312 and 0 < skipped <= 10
    assert len(messages) <= 2  # at most once per split
    assert all(c.label == "A" for c in train + test)
    assert len({c.completion_A[0]["content"] for c in (t.comparison for t in test)}) > 290


def test_malformed_rows_are_rejected() -> None:
    good = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    parsed = hh_row_to_comparison(good)
    assert parsed == Comparison(
        [{"role": "user", "content": "hi"}],
        [{"role": "assistant", "content": "hello"}],
        [{"role": "assistant", "content": "go away"}],
    )
    malformed = {
        "earlier turns differ": {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello",
            "rejected": "\n\nHuman: hey\n\nAssistant: go away",
        },
        "last turn is human": {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye",
            "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: ciao",
        },
        "different turn counts": {
            "chosen": "\n\nHuman: hi\n\nAssistant: a\n\nHuman: b\n\nAssistant: c",
            "rejected": "\n\nHuman: hi\n\nAssistant: c",
        },
        "text before the first turn": {
            "chosen": "oops\n\nHuman: hi\n\nAssistant: a",
            "rejected": "oops\n\nHuman: hi\n\nAssistant: b",
        },
        "no turns at all": {"chosen": "hello", "rejected": "bye"},
        "missing field": {"chosen": "\n\nHuman: hi\n\nAssistant: a"},
        "not a string": {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": None},
    }
    for why, row in malformed.items():
        assert hh_row_to_comparison(row) is None, why
    assert parse_hh_transcript("\n\nHuman: a\n\nHuman: b\n\nAssistant: c") == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]


def test_bundled_comparisons_are_tagged_by_kind() -> None:
    train, test = HHHComparisonBuilder(dataset="bundled", test_size=50).get_labeled_comparisons()
    assert test is not None and len(test) == 50 and len(train) > 1000
    kinds = {c.kind for c in test}
    assert None not in kinds and "correctness" in kinds


def test_comparison_kind_names_what_differs() -> None:
    prompt = [{"role": "user", "content": "What is 2 plus 3?"}]

    def kind(a: str, b: str) -> str:
        return comparison_kind(
            Comparison(prompt, [{"role": "assistant", "content": a}], [{"role": "assistant", "content": b}])
        )

    assert kind("2 plus 3 is 5.", "2 plus 3 is 4.") == "correctness"
    assert kind("Sure! 2 plus 3 is 5.", "2 plus 3 is 5.") == "style"
    assert kind("Sure! Sure! 2 plus 3 is 5.", "2 plus 3 is 5.") == "stacked"
    assert kind("Sure! 2 plus 3 is 5.", "2 plus 3 is 4.") == "correctness+style"
    assert kind("2 plus 3 is 5.", "2 plus 3 is 5.") == "same"
    assert kind("2 plus 3 is 5.", "2 plus") == "truncation"
    assert kind("2 plus 3 is 5.", "Sure! 2 pluss 3 is 5 tree.") == "garbage+style"


def test_builder_on_a_local_directory_of_splits(tmp_path: Path) -> None:
    def row(i: int, diverge: bool = False) -> str:
        prompt = f"\n\nHuman: What is {i} plus 1?"
        other = f"\n\nHuman: What is {i} plus 2?" if diverge else prompt
        return json.dumps(
            {"chosen": f"{prompt}\n\nAssistant: {i + 1}.", "rejected": f"{other}\n\nAssistant: no."}
        )

    (tmp_path / "train.jsonl").write_text(
        "\n".join([row(i) for i in range(5)] + [row(9, diverge=True)]) + "\n"
    )
    train, test = HHHComparisonBuilder(dataset=str(tmp_path), test_size=2).get_labeled_comparisons()
    assert len(train) == 5 and test is None  # no test file: no test split
    (tmp_path / "test.jsonl").write_text("\n".join(row(i) for i in range(10, 14)) + "\n")
    train, test = HHHComparisonBuilder(dataset=str(tmp_path), test_size=2).get_labeled_comparisons()
    assert len(train) == 5 and test is not None and len(test) == 2
    assert {c.comparison.completion_B[0]["content"] for c in train} == {"no."}
