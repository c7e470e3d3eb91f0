"""The generated rows: determinism, the no_robots and hh-rlhf schemas, and label consistency."""

from __future__ import annotations

from collections import Counter

import pytest

from cookbook.data import gold_judge
from cookbook.data.bundled import chat_split, comparison_split, write_bundled
from cookbook.data.generator import GeneratorConfig, chat_rows, comparison_rows
from cookbook.data.hh_format import parse_transcript

SMALL = GeneratorConfig(chat_train=400, chat_test=50, comparison_train=400, comparison_test=50)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path) -> None:
    first = write_bundled(tmp_path / "a", seed=0)
    again = write_bundled(tmp_path / "b", seed=0)
    other = write_bundled(tmp_path / "c", seed=1)
    assert sorted(first) == ["chat/test", "chat/train", "comparisons/test", "comparisons/train"]
    for name in first:
        assert first[name].read_bytes() == again[name].read_bytes(), name
        assert first[name].read_bytes() != other[name].read_bytes(), name
    assert first["chat/train"] == tmp_path / "a" / "chat" / "train.jsonl"


def test_splits_differ_and_have_the_configured_sizes() -> None:
    config = GeneratorConfig()
    assert len(chat_split("train")) == config.chat_train
    assert len(chat_split("test")) == config.chat_test
    assert len(comparison_split("train")) == config.comparison_train
    assert len(comparison_split("test")) == config.comparison_test
    assert chat_rows("train", 0, SMALL)[:50] != chat_rows("test", 0, SMALL)


def test_bad_split_names_raise() -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        chat_split("validation")
    with pytest.raises(ValueError, match="unknown split"):
        comparison_split("dev")


def test_chat_rows_follow_the_no_robots_schema() -> None:
    rows = chat_rows("train", 0, SMALL)
    kinds = Counter()
    for row in rows:
        assert set(row) == {"prompt", "prompt_id", "messages", "category"}
        assert len(row["prompt_id"]) == 64 and int(row["prompt_id"], 16) >= 0
        messages = row["messages"]
        assert all(set(m) == {"role", "content"} and m["content"] for m in messages)
        turns = messages[1:] if messages[0]["role"] == "system" else messages
        assert [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2)
        assert len(turns) % 2 == 0
        assert row["prompt"] == turns[0]["content"]
        # The last question is a bundled task and the category names it.
        assert gold_judge.assess(turns[:-1], turns[-1]["content"]).task == row["category"]
        kinds["system"] += messages[0]["role"] == "system"
        kinds["multi_turn"] += len(turns) > 2
    assert len({row["prompt_id"] for row in rows}) == len(rows)
    assert 0.05 < kinds["system"] / len(rows) < 0.2
    assert 0.08 < kinds["multi_turn"] / len(rows) < 0.25


def test_chat_answers_vary_but_are_mostly_correct() -> None:
    rows = chat_rows("train", 0, SMALL)
    graded = [gold_judge.assess(r["messages"][:-1], r["messages"][-1]["content"]) for r in rows]
    contents = Counter(g.content for g in graded)
    assert contents["correct"] / len(rows) > 0.8
    assert contents["incorrect"] > 0 and contents["truncated"] > 0
    assert any(g.polite_openers for g in graded) and any(g.rude_openers for g in graded)
    assert len({g.task for g in graded}) == 6


def test_comparison_rows_follow_the_hh_schema_and_the_gold_label() -> None:
    rows = comparison_rows("test", 0, SMALL) + comparison_rows("train", 0, SMALL)
    multi_turn = 0
    for row in rows:
        assert set(row) == {"chosen", "rejected"}
        chosen, rejected = parse_transcript(row["chosen"]), parse_transcript(row["rejected"])
        assert row["chosen"].startswith("\n\nHuman: ")
        assert chosen[:-1] == rejected[:-1], "transcripts must share every turn but the last"
        assert chosen[-1]["role"] == rejected[-1]["role"] == "assistant"
        assert chosen[-1]["content"] != rejected[-1]["content"]
        assert [m["role"] for m in chosen] == ["user", "assistant"] * (len(chosen) // 2)
        prompt = chosen[:-1]
        assert gold_judge.preference(prompt, chosen[-1]["content"], rejected[-1]["content"]) == -1.0
        multi_turn += len(prompt) > 1
    assert multi_turn > 0


def test_comparisons_isolate_correctness_and_include_stacked_openers() -> None:
    rows = comparison_rows("train", 0, SMALL)
    only_correctness = stacked_rejected = 0
    for row in rows:
        chosen, rejected = parse_transcript(row["chosen"]), parse_transcript(row["rejected"])
        a = gold_judge.assess(chosen[:-1], chosen[-1]["content"])
        b = gold_judge.assess(chosen[:-1], rejected[-1]["content"])
        same_style = (a.polite_openers, a.rude_openers) == (b.polite_openers, b.rude_openers)
        only_correctness += same_style and (a.content, b.content) == ("correct", "incorrect")
        stacked_rejected += b.stacked and b.content == "correct"
    assert only_correctness / len(rows) > 0.2
    assert stacked_rejected > 0
