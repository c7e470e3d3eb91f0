"""Two labelling processes writing at once lose nothing; a writer killed mid-transaction leaves no half judgment."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from cookbook.feedback.store import FeedbackStore
from tests.feedback.known_db import build_known_db

REPO = Path(__file__).resolve().parents[2]
JUDGMENTS_PER_WRITER = 60

WRITER = """
import sys
from cookbook.feedback.store import FeedbackStore, NewAnswer
name, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with FeedbackStore.open(path) as store:
    for i in range(n):
        _, (a, b) = store.add_question(f"{name} question {i}?", [NewAnswer("x", "m"), NewAnswer("y", "m")], name)
        store.rank([[a], [b]], name)
        store.rate(b, "down", name, correction=f"{name} fixed {i}")
"""

# Stalls inside the rating transaction, after the corrected answer is inserted and before the rating is.
STALLING_WRITER = """
import sys, time
from cookbook.feedback.store import FeedbackStore

class Stalling:
    def __init__(self, conn):
        self.conn = conn
    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO ratings"):
            print("inside", flush=True)
            time.sleep(3600)
        return self.conn.execute(sql, *args)
    def __getattr__(self, name):
        return getattr(self.conn, name)

store = FeedbackStore.open(sys.argv[1])
store._conn = Stalling(store._conn)
store.rate(int(sys.argv[2]), "down", "crasher", correction="half a judgment")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_two_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite"
    FeedbackStore.open(path).close()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, name, str(path), str(JUDGMENTS_PER_WRITER)], env=_env()
        )
        for name in ("ann", "bob")
    ]
    assert [w.wait() for w in writers] == [0, 0]
    with FeedbackStore.open(path) as store:
        counts = store.counts()
        questions = store.rows("questions")
    n = 2 * JUDGMENTS_PER_WRITER
    assert (counts["questions"], counts["answers"], counts["rankings"], counts["ratings"]) == (n, 3 * n, n, n)
    assert counts["corrections"] == n and counts["ranking_entries"] == 2 * n
    for name in ("ann", "bob"):
        assert sorted(q["messages"] for q in questions if q["annotator"] == name) == sorted(
            f'[{{"role": "user", "content": "{name} question {i}?"}}]' for i in range(JUDGMENTS_PER_WRITER)
        )
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_writer_killed_mid_transaction_leaves_no_half_judgment(tmp_path: Path) -> None:
    known = build_known_db(tmp_path / "feedback.sqlite")
    with FeedbackStore.open(known.path) as store:
        before = store.counts()
    crasher = subprocess.Popen(
        [sys.executable, "-c", STALLING_WRITER, str(known.path), str(known.capital[1])],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert crasher.stdout is not None
    assert crasher.stdout.readline().strip() == "inside"  # the correction row is written, uncommitted
    os.kill(crasher.pid, signal.SIGKILL)
    assert crasher.wait() == -signal.SIGKILL
    with FeedbackStore.open(known.path) as store:
        assert store.counts() == before
        assert all(a["text"] != "half a judgment" for a in store.rows("answers"))
        store.rate(known.capital[1], "down", "next", correction="Paris.")  # the lock was released
        assert store.counts()["corrections"] == before["corrections"] + 1
    assert sqlite3.connect(known.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
