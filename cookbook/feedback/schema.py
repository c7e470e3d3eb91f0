"""The feedback database's schema, its version, and the migrations that bring older files up to date.

A feedback database is a SQLite file marked as ours by `PRAGMA application_id`; `PRAGMA user_version`
holds the schema version. `MIGRATIONS[v]` takes a file from version v to v + 1, so opening an older
file upgrades it in place and a later release adds one entry per schema change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

APPLICATION_ID = 0x52484642  # "RHFB": tells our files apart from any other SQLite database
SCHEMA_VERSION = 1
FEEDBACK_SUFFIXES = (".sqlite", ".sqlite3", ".db")

_SCHEMA_V1 = """
CREATE TABLE questions (
    id INTEGER PRIMARY KEY,
    messages TEXT NOT NULL,          -- JSON: the prompt conversation, ending with the user's question
    annotator TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE answers (
    id INTEGER PRIMARY KEY,
    question_id INTEGER NOT NULL REFERENCES questions(id),
    text TEXT NOT NULL,
    source TEXT NOT NULL,            -- a base model, a tinker:// checkpoint, or "human" for a correction
    sampling TEXT,                   -- JSON: the sampling settings (null for a human's answer)
    renderer TEXT,                   -- the chat format the prompt was rendered in
    corrects_answer_id INTEGER REFERENCES answers(id),
    annotator TEXT,                  -- who wrote it, for a human's answer
    created_at TEXT NOT NULL
);
CREATE TABLE ratings (
    id INTEGER PRIMARY KEY,
    answer_id INTEGER NOT NULL REFERENCES answers(id),
    value INTEGER NOT NULL CHECK (value IN (-1, 1)),
    corrected_answer_id INTEGER REFERENCES answers(id),
    annotator TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE rankings (
    id INTEGER PRIMARY KEY,
    question_id INTEGER NOT NULL REFERENCES questions(id),
    annotator TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE ranking_entries (
    ranking_id INTEGER NOT NULL REFERENCES rankings(id),
    answer_id INTEGER NOT NULL REFERENCES answers(id),
    position INTEGER NOT NULL CHECK (position >= 0),  -- 0 is best, equal positions are ties
    PRIMARY KEY (ranking_id, answer_id)
);
CREATE INDEX answers_by_question ON answers(question_id);
CREATE INDEX ratings_by_answer ON ratings(answer_id);
CREATE INDEX rankings_by_question ON rankings(question_id);
"""

Migration = Callable[[sqlite3.Connection], None]


def _create_v1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


MIGRATIONS: dict[int, Migration] = {0: _create_v1}
"""From version v (the key) to v + 1; version 0 is an empty file."""

TABLES: tuple[str, ...] = ("questions", "answers", "ratings", "rankings", "ranking_entries")
