"""The store: opening (ours, not ours, newer, older), every refused input writing nothing, reads and exports."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cookbook.feedback import schema
from cookbook.feedback.errors import (
    InvalidFeedbackError,
    NewerSchemaError,
    NotAFeedbackDatabaseError,
    UnknownIdError,
)
from cookbook.feedback.store import FeedbackStore, NewAnswer, is_feedback_path
from cookbook.recipes.preference.datasets import hh_row_to_comparison
from tests.feedback.known_db import KnownDB, build_known_db


@pytest.fixture
def known(tmp_path: Path) -> KnownDB:
    return build_known_db(tmp_path / "feedback.sqlite")


def test_a_new_file_gets_the_schema_version_wal_and_our_mark(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    with FeedbackStore.open(path) as store:
        assert store.schema_version == schema.SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_the_rows(known: KnownDB) -> None:
    with FeedbackStore.open(known.path, create=False) as store:
        assert store.counts()["questions"] == 2


def test_a_missing_file_is_not_created_when_create_is_false(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FeedbackStore.open(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("just some text, long enough to be read as a header " * 4)
    with pytest.raises(NotAFeedbackDatabaseError, match="not a feedback database"):
        FeedbackStore.open(path)


def test_another_programs_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAFeedbackDatabaseError, match="not a feedback database"):
        FeedbackStore.open(path)
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["songs"]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


def test_a_newer_schema_is_refused(known: KnownDB) -> None:
    conn = sqlite3.connect(known.path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(NewerSchemaError, match="upgrade"):
        FeedbackStore.open(known.path)


def test_an_older_schema_is_migrated_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.sqlite"
    with FeedbackStore.open(path) as store:
        store.add_question("Hi?", [NewAnswer("Hello.", "m")], "a")

    def add_flag_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE questions ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(schema.MIGRATIONS, 1, add_flag_column)
    monkeypatch.setattr("cookbook.feedback.store.SCHEMA_VERSION", 2)
    with FeedbackStore.open(path) as store:
        assert store.schema_version == 2
        assert store.rows("questions")[0]["flagged"] == 0


def test_is_feedback_path() -> None:
    assert is_feedback_path("feedback.sqlite") and is_feedback_path("/x/y.SQLITE3")
    assert not is_feedback_path("bundled") and not is_feedback_path("data/train.jsonl")


def test_counts_and_rows(known: KnownDB) -> None:
    with FeedbackStore.open(known.path) as store:
        assert store.counts() == {
            "questions": 2,
            "answers": 6,
            "ratings": 2,
            "rankings": 2,
            "ranking_entries": 5,
            "ratings_up": 1,
            "ratings_down": 1,
            "corrections": 1,
        }
        correction = store.rows("answers", limit=1)[0]
        assert correction["id"] == known.correction
        assert (correction["source"], correction["corrects_answer_id"], correction["annotator"]) == (
            "human",
            known.add[1],
            "alice",
        )
        first = store.rows("answers")[-1]
        assert json.loads(first["sampling"]) == {"temperature": 1.0, "max_tokens": 64}
        assert first["renderer"] == "role_colon" and first["source"] == "tiny-llama"


BAD_INPUTS = [
    ("empty question", lambda s, k: s.add_question("  ", [NewAnswer("x", "m")], "a"), InvalidFeedbackError),
    ("no question turn", lambda s, k: s.add_question([], [], "a"), InvalidFeedbackError),
    ("empty annotator", lambda s, k: s.add_question("Q?", [NewAnswer("x", "m")], " "), InvalidFeedbackError),
    (
        "answer without source",
        lambda s, k: s.add_question("Q?", [NewAnswer("x", "")], "a"),
        InvalidFeedbackError,
    ),
    ("rate unknown answer", lambda s, k: s.rate(999, "up", "a"), UnknownIdError),
    ("rate with a bad value", lambda s, k: s.rate(k.add[0], "meh", "a"), InvalidFeedbackError),  # type: ignore[arg-type]
    ("empty correction", lambda s, k: s.rate(k.add[0], "down", "a", correction=" "), InvalidFeedbackError),
    ("correction of unknown answer", lambda s, k: s.rate(999, "down", "a", correction="x"), UnknownIdError),
    ("ranking of one answer", lambda s, k: s.rank([[k.add[0]]], "a"), InvalidFeedbackError),
    ("ranking with an empty tier", lambda s, k: s.rank([[k.add[0]], []], "a"), InvalidFeedbackError),
    ("ranking an answer twice", lambda s, k: s.rank([[k.add[0]], [k.add[0]]], "a"), InvalidFeedbackError),
    ("ranking an unknown answer", lambda s, k: s.rank([[k.add[0]], [999]], "a"), UnknownIdError),
    (
        "ranking across questions",
        lambda s, k: s.rank([[k.add[0]], [k.capital[0]]], "a"),
        InvalidFeedbackError,
    ),
    ("ranking that is not tiers", lambda s, k: s.rank([k.add[0], k.add[1]], "a"), InvalidFeedbackError),  # type: ignore[list-item]
    (
        "answers to an unknown question",
        lambda s, k: s.add_answers(999, [NewAnswer("x", "m")]),
        UnknownIdError,
    ),
]


@pytest.mark.parametrize(("name", "call", "error"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_every_bad_input_is_refused_with_a_typed_error_and_writes_nothing(
    known: KnownDB, name: str, call: object, error: type[Exception]
) -> None:
    with FeedbackStore.open(known.path) as store:
        before = store.counts()
        with pytest.raises(error) as raised:
            call(store, known)  # type: ignore[operator]
        assert raised.value.field  # names what was wrong
        assert store.counts() == before


def test_qa_and_ranking_datasets_and_pandas(known: KnownDB) -> None:
    with FeedbackStore.open(known.path) as store:
        qa = store.qa_dataset()
        rankings = store.ranking_dataset()
        frame = store.to_pandas("ratings")
    assert len(qa) == 6
    by_answer = {row["answer"]: row for row in qa}
    assert (by_answer["7."]["up"], by_answer["8."]["down"]) == (1, 1)
    assert by_answer["3 plus 4 is 7."]["corrects_answer_id"] == known.add[1]
    assert by_answer["The capital of France is Paris."]["question"] == "What is the capital of France?"
    assert rankings[0]["answers"] == ["Sure! 7.", "7.", "8."] and rankings[0]["positions"] == [0, 1, 1]
    assert list(frame["value"]) == [1, -1] and list(frame["annotator"]) == ["alice", "alice"]


def test_ranked_pairs_drop_or_keep_ties(known: KnownDB) -> None:
    with FeedbackStore.open(known.path) as store:
        dropped = [(p.chosen, p.rejected, p.tie) for p in store.ranked_pairs()]
        kept = [(p.chosen, p.rejected, p.tie) for p in store.ranked_pairs(keep_ties=True)]
    assert dropped == [
        ("Sure! 7.", "7.", False),
        ("Sure! 7.", "8.", False),
        ("The capital of France is Paris.", "The capital of France is Rome.", False),
    ]
    assert kept == [*dropped[:2], ("7.", "8.", True), dropped[2]]


def test_jsonl_exports_in_the_no_robots_and_hh_rlhf_schemas(known: KnownDB, tmp_path: Path) -> None:
    with FeedbackStore.open(known.path) as store:
        assert store.export_jsonl(tmp_path / "sft.jsonl", "no_robots") == 2
        assert store.export_jsonl(tmp_path / "pairs.jsonl", "hh_rlhf") == 3
        with pytest.raises(InvalidFeedbackError):
            store.export_rows("alpaca")  # type: ignore[arg-type]
    sft = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert [row["messages"][-1]["content"] for row in sft] == ["7.", "3 plus 4 is 7."]
    assert set(sft[0]) == {"prompt", "prompt_id", "messages", "category"}
    assert sft[0]["prompt"] == "What is 3 plus 4?"
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    comparison = hh_row_to_comparison(pairs[2])
    assert comparison is not None
    assert comparison.prompt_conversation == [{"role": "user", "content": "What is the capital of France?"}]
    assert comparison.completion_A == [{"role": "assistant", "content": "The capital of France is Paris."}]
    assert comparison.completion_B == [{"role": "assistant", "content": "The capital of France is Rome."}]
