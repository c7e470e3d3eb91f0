"""The feedback store: questions, the answers they got, and people's ratings and rankings, in one SQLite file.

    store = FeedbackStore.open("feedback.sqlite")          # created (or migrated) on first open
    qid, (a, b) = store.add_question("What is 3 plus 4?", [NewAnswer("7.", "tiny-llama"), ...], "ann")
    store.rank([[a], [b]], "ann")                            # a better than b; [[a, b]] is a tie
    store.rate(b, "down", "ann", correction="3 plus 4 is 7.")
    store.counts(); store.to_pandas("ratings"); store.export_jsonl("sft.jsonl", "no_robots")

Every judgment is written in one transaction (BEGIN IMMEDIATE ... COMMIT) in WAL mode: several
labelling processes can write at once (a writer waits for the lock instead of failing), and a
process killed mid-write leaves nothing of that judgment behind.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from cookbook.feedback.errors import (
    InvalidFeedbackError,
    NewerSchemaError,
    NotAFeedbackDatabaseError,
    UnknownIdError,
)
from cookbook.feedback.schema import APPLICATION_ID, FEEDBACK_SUFFIXES, MIGRATIONS, SCHEMA_VERSION, TABLES

Message = dict[str, str]
Rating = Literal["up", "down"]
ExportSchema = Literal["no_robots", "hh_rlhf"]
HUMAN_SOURCE = "human"
RATING_VALUES: dict[str, int] = {"up": 1, "down": -1}
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another writer's transaction


def is_feedback_path(source: str | Path) -> bool:
    """True for a path that names a feedback database (by its suffix), wherever a data set is accepted."""
    return str(source).lower().endswith(FEEDBACK_SUFFIXES)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class NewAnswer:
    """An answer to store: its text and what produced it."""

    text: str
    source: str  # a base model name or a tinker:// checkpoint
    sampling: Mapping[str, Any] | None = None
    renderer: str | None = None


@dataclass(frozen=True)
class RankedPair:
    """One ordered pair from a ranking: `chosen` was placed above `rejected` (or beside it, when `tie`)."""

    question_id: int
    prompt: list[Message]
    chosen: str
    rejected: str
    tie: bool = False


@dataclass(frozen=True)
class ChatExample:
    """A question with an answer worth imitating (up-rated, or a person's correction)."""

    question_id: int
    messages: list[Message] = field(default_factory=list)


def question_messages(question: str | Sequence[Mapping[str, str]]) -> list[Message]:
    if isinstance(question, str):
        question = [{"role": "user", "content": question}]
    messages = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in question]
    if not messages or messages[-1]["role"] != "user":
        raise InvalidFeedbackError("the conversation must end with the user's question", "question")
    if any(m["role"] not in ("system", "user", "assistant") for m in messages):
        raise InvalidFeedbackError("roles must be system, user or assistant", "question")
    if not messages[-1]["content"].strip():
        raise InvalidFeedbackError("the question is empty", "question")
    return messages


def _annotator(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidFeedbackError("the annotator's name is empty", "annotator")
    return name.strip()


class FeedbackStore:
    """One open feedback database. Safe to share between threads (each write holds a lock)."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, create: bool = True) -> FeedbackStore:
        """Open (or, with `create`, start) a feedback database; migrate an older schema in place.

        Raises NotAFeedbackDatabaseError for a file that is not SQLite or is another program's
        database, NewerSchemaError for one written by a newer release, FileNotFoundError when
        the file is missing and `create` is False.
        """
        path = Path(path).expanduser()
        if not path.exists() and not create:
            raise FileNotFoundError(f"no feedback database at {path}")
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            _check_ours(conn, path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            _migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        conn.row_factory = sqlite3.Row
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write: all of it is committed, or (on any error, or a crash) none of it."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add_question(
        self,
        question: str | Sequence[Mapping[str, str]],
        answers: Sequence[NewAnswer],
        annotator: str,
    ) -> tuple[int, list[int]]:
        """Store a question (text, or a conversation ending with it) and its answers; returns their ids."""
        messages = question_messages(question)
        annotator = _annotator(annotator)
        for i, answer in enumerate(answers):
            if not isinstance(answer.source, str) or not answer.source:
                raise InvalidFeedbackError(f"answers[{i}] has no source", "answers")
        stamp = now()
        with self._transaction() as conn:
            question_id = conn.execute(
                "INSERT INTO questions (messages, annotator, created_at) VALUES (?, ?, ?)",
                (json.dumps(messages), annotator, stamp),
            ).lastrowid
            answer_ids = [
                self._insert_answer(conn, int(question_id), a.text, a.source, a.sampling, a.renderer, stamp)
                for a in answers
            ]
        return int(question_id), answer_ids

    @staticmethod
    def _insert_answer(
        conn: sqlite3.Connection,
        question_id: int,
        text: str,
        source: str,
        sampling: Mapping[str, Any] | None,
        renderer: str | None,
        stamp: str,
        corrects: int | None = None,
        annotator: str | None = None,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO answers (question_id, text, source, sampling, renderer, corrects_answer_id, "
            "annotator, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                question_id,
                text,
                source,
                None if sampling is None else json.dumps(dict(sampling)),
                renderer,
                corrects,
                annotator,
                stamp,
            ),
        )
        return int(cursor.lastrowid or 0)

    def add_answers(self, question_id: int, answers: Sequence[NewAnswer]) -> list[int]:
        """More answers to a stored question (e.g. another model's)."""
        stamp = now()
        with self._transaction() as conn:
            self._question_row(conn, question_id)
            return [
                self._insert_answer(conn, question_id, a.text, a.source, a.sampling, a.renderer, stamp)
                for a in answers
            ]

    def rate(
        self, answer_id: int, rating: Rating | int, annotator: str, correction: str | None = None
    ) -> tuple[int, int | None]:
        """Rate an answer up or down, optionally with a corrected answer; returns (rating id, correction's answer id)."""
        value = RATING_VALUES.get(rating) if isinstance(rating, str) else rating
        if value not in (1, -1):
            raise InvalidFeedbackError(f"rating must be 'up' or 'down', got {rating!r}", "rating")
        annotator = _annotator(annotator)
        if correction is not None and not correction.strip():
            raise InvalidFeedbackError("the corrected answer is empty", "correction")
        stamp = now()
        with self._transaction() as conn:
            answer = self._answer_row(conn, answer_id)
            corrected_id = None
            if correction is not None:
                corrected_id = self._insert_answer(
                    conn,
                    int(answer["question_id"]),
                    correction.strip(),
                    HUMAN_SOURCE,
                    None,
                    None,
                    stamp,
                    corrects=answer_id,
                    annotator=annotator,
                )
            rating_id = conn.execute(
                "INSERT INTO ratings (answer_id, value, corrected_answer_id, annotator, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (answer_id, value, corrected_id, annotator, stamp),
            ).lastrowid
        return int(rating_id or 0), corrected_id

    def rank(self, order: Sequence[Sequence[int]], annotator: str) -> int:
        """Rank answers to one question, best first: `order` is a list of tiers, each tier tied answers.

        [[3], [4]] says answer 3 is better than 4; [[3, 4]] that they tie; [[5], [3, 4]] that 5
        beats both, which tie. At least two distinct answers, all to the same question.
        """
        if isinstance(order, str | bytes) or not all(
            isinstance(tier, Sequence) and not isinstance(tier, str | bytes) for tier in order
        ):
            raise InvalidFeedbackError("order must be a list of tiers, each a list of answer ids", "order")
        ids = [answer_id for tier in order for answer_id in tier]
        if any(not isinstance(i, int) or isinstance(i, bool) for i in ids):
            raise InvalidFeedbackError("answer ids must be integers", "order")
        if any(not tier for tier in order):
            raise InvalidFeedbackError("a tier of the ranking is empty", "order")
        if len(set(ids)) != len(ids):
            raise InvalidFeedbackError("an answer appears twice in the ranking", "order")
        if len(ids) < 2:
            raise InvalidFeedbackError(f"a ranking needs at least two answers, got {len(ids)}", "order")
        annotator = _annotator(annotator)
        with self._transaction() as conn:
            questions = {int(self._answer_row(conn, i)["question_id"]) for i in ids}
            if len(questions) > 1:
                raise InvalidFeedbackError(
                    f"the ranked answers belong to different questions {sorted(questions)}", "order"
                )
            ranking_id = int(
                conn.execute(
                    "INSERT INTO rankings (question_id, annotator, created_at) VALUES (?, ?, ?)",
                    (questions.pop(), annotator, now()),
                ).lastrowid
                or 0
            )
            conn.executemany(
                "INSERT INTO ranking_entries (ranking_id, answer_id, position) VALUES (?, ?, ?)",
                [
                    (ranking_id, answer_id, position)
                    for position, tier in enumerate(order)
                    for answer_id in tier
                ],
            )
        return ranking_id

    @staticmethod
    def _answer_row(conn: sqlite3.Connection, answer_id: int) -> sqlite3.Row:
        if not isinstance(answer_id, int) or isinstance(answer_id, bool):
            raise InvalidFeedbackError(f"answer id must be an integer, got {answer_id!r}", "answer_id")
        row = conn.execute("SELECT * FROM answers WHERE id = ?", (answer_id,)).fetchone()
        if row is None:
            raise UnknownIdError(f"no answer with id {answer_id}", "answer_id")
        return row

    @staticmethod
    def _question_row(conn: sqlite3.Connection, question_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM questions WHERE id = ?", (question_id,)).fetchone()
        if row is None:
            raise UnknownIdError(f"no question with id {question_id}", "question_id")
        return row

    # -- reading ------------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        """Rows per table, and ratings split into up / down / with a correction."""
        counts = {table: int(self._read(f"SELECT COUNT(*) FROM {table}")[0][0]) for table in TABLES}
        up, down, corrected = self._read(
            "SELECT COALESCE(SUM(value = 1), 0), COALESCE(SUM(value = -1), 0), "
            "COUNT(corrected_answer_id) FROM ratings"
        )[0]
        return {**counts, "ratings_up": int(up), "ratings_down": int(down), "corrections": int(corrected)}

    def rows(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A table's rows as dicts, newest first (`limit` of them, or all)."""
        if table not in TABLES:
            raise InvalidFeedbackError(f"unknown table {table!r}; the tables are {list(TABLES)}", "table")
        order = "ranking_id DESC, position" if table == "ranking_entries" else "id DESC"
        sql = f"SELECT * FROM {table} ORDER BY {order}" + ("" if limit is None else " LIMIT ?")
        return [dict(row) for row in self._read(sql, () if limit is None else (limit,))]

    def to_pandas(self, table: str = "answers") -> Any:
        """A table as a pandas DataFrame (oldest first)."""
        import pandas as pd

        return pd.DataFrame(list(reversed(self.rows(table))), columns=self._columns(table))

    def _columns(self, table: str) -> list[str]:
        return [row["name"] for row in self._read(f"PRAGMA table_info({table})")]

    def qa_pairs(self) -> list[dict[str, Any]]:
        """Every question-answer pair with its ratings: up / down counts and the corrections made of it."""
        rows = self._read(
            "SELECT a.id AS answer_id, a.question_id, q.messages, a.text AS answer, a.source, a.sampling, "
            "a.renderer, a.corrects_answer_id, "
            "(SELECT COUNT(*) FROM ratings r WHERE r.answer_id = a.id AND r.value = 1) AS up, "
            "(SELECT COUNT(*) FROM ratings r WHERE r.answer_id = a.id AND r.value = -1) AS down "
            "FROM answers a JOIN questions q ON q.id = a.question_id ORDER BY a.id"
        )
        pairs = []
        for row in rows:
            messages = json.loads(row["messages"])
            pairs.append(
                {
                    **{k: row[k] for k in row.keys() if k != "messages"},  # noqa: SIM118 (sqlite3.Row)
                    "question": messages[-1]["content"],
                    "prompt": messages,
                    "sampling": row["sampling"] or "",
                    "renderer": row["renderer"] or "",
                }
            )
        return pairs

    def qa_dataset(self) -> Any:
        """`qa_pairs()` as a datasets.Dataset."""
        import datasets

        return datasets.Dataset.from_list(self.qa_pairs())

    def rankings(self) -> list[dict[str, Any]]:
        """Every ranking: its question, the ranked answers best first, and their positions (equal = tie)."""
        entries: dict[int, list[sqlite3.Row]] = {}
        for row in self._read(
            "SELECT e.ranking_id, e.answer_id, e.position, a.text FROM ranking_entries e "
            "JOIN answers a ON a.id = e.answer_id ORDER BY e.ranking_id, e.position, e.answer_id"
        ):
            entries.setdefault(int(row["ranking_id"]), []).append(row)
        return [
            {
                "ranking_id": int(r["id"]),
                "question_id": int(r["question_id"]),
                "prompt": json.loads(r["messages"]),
                "answer_ids": [int(e["answer_id"]) for e in entries.get(int(r["id"]), [])],
                "answers": [e["text"] for e in entries.get(int(r["id"]), [])],
                "positions": [int(e["position"]) for e in entries.get(int(r["id"]), [])],
                "annotator": r["annotator"],
                "created_at": r["created_at"],
            }
            for r in self._read(
                "SELECT r.id, r.question_id, q.messages, r.annotator, r.created_at FROM rankings r "
                "JOIN questions q ON q.id = r.question_id ORDER BY r.id"
            )
        ]

    def ranking_dataset(self) -> Any:
        """`rankings()` as a datasets.Dataset."""
        import datasets

        return datasets.Dataset.from_list(self.rankings())

    # -- what training reads ------------------------------------------------------------------

    def chat_examples(self) -> list[ChatExample]:
        """Up-rated answers (more ups than downs) and people's corrections, one example each.

        A question asked many times keeps all its examples, so the data keeps the frequencies people asked with.
        """
        return [
            ChatExample(
                pair["question_id"], [*pair["prompt"], {"role": "assistant", "content": pair["answer"]}]
            )
            for pair in self.qa_pairs()
            if pair["corrects_answer_id"] is not None or pair["up"] > pair["down"]
        ]

    def ranked_pairs(self, keep_ties: bool = False) -> list[RankedPair]:
        """Every ranking's ordered pairs (better, worse); tied pairs only with `keep_ties`."""
        pairs = []
        for ranking in self.rankings():
            entries = list(zip(ranking["answers"], ranking["positions"], strict=True))
            for i, (first, first_position) in enumerate(entries):
                for second, second_position in entries[i + 1 :]:
                    tie = first_position == second_position
                    if tie and not keep_ties:
                        continue
                    pairs.append(RankedPair(ranking["question_id"], ranking["prompt"], first, second, tie))
        return pairs

    def export_rows(self, schema: ExportSchema) -> list[dict[str, Any]]:
        """Rows in the no_robots schema (chat examples) or the hh-rlhf schema (ranked pairs, ties left out)."""
        from cookbook.feedback.formats import hh_rlhf_row, no_robots_row

        if schema == "no_robots":
            return [no_robots_row(example) for example in self.chat_examples()]
        if schema == "hh_rlhf":
            rows = (hh_rlhf_row(pair) for pair in self.ranked_pairs(keep_ties=False))
            return [row for row in rows if row is not None]
        raise InvalidFeedbackError(f"unknown export schema {schema!r}: no_robots or hh_rlhf", "schema")

    def export_jsonl(self, out: str | Path | IO[str], schema: ExportSchema) -> int:
        """Write `export_rows(schema)` as JSONL to a path or an open text file; returns the row count."""
        rows = self.export_rows(schema)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if isinstance(out, str | Path):
            Path(out).write_text(text, encoding="utf-8")
        else:
            out.write(text)
        return len(rows)


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not SQLite, or a SQLite database some other program made."""
    try:
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = int(conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise NotAFeedbackDatabaseError(f"{path} is not a feedback database (not SQLite: {exc})") from exc
    if application_id != APPLICATION_ID and (application_id != 0 or tables > 0):
        raise NotAFeedbackDatabaseError(
            f"{path} is a SQLite database, but not a feedback database (it has {tables} schema "
            "objects of another program); give a new file name or one this tool created"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION, one migration per version, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"{path} has feedback schema version {version}; this release reads up to "
                f"{SCHEMA_VERSION}: upgrade the cookbook"
            )
        for from_version in range(version, SCHEMA_VERSION):
            MIGRATIONS[from_version](conn)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
