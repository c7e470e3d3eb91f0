"""The app's JSON API: what it writes, and every bad input refused with a 4xx JSON body and nothing written."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cookbook.feedback.app import create_app
from cookbook.feedback.store import FeedbackStore
from tests.feedback.fake_answerer import EchoAnswerer


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "feedback.sqlite"


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(db), EchoAnswerer())) as test_client:
        yield test_client


def counts(db: Path) -> dict[str, int]:
    with FeedbackStore.open(db) as store:
        return store.counts()


def ask(client: TestClient, question: str = "What is 3 plus 4?", n: int = 2) -> dict:
    response = client.post("/api/questions", json={"question": question, "n": n, "annotator": "ann"})
    assert response.status_code == 200, response.text
    return response.json()


def test_pages_are_served(client: TestClient) -> None:
    assert "Ask the model" in client.get("/").text
    assert "Export" in client.get("/data").text


def test_ask_rank_rate_correct_and_export(client: TestClient, db: Path) -> None:
    asked = ask(client)
    assert asked["question"] == "What is 3 plus 4?"
    first, second = (answer["id"] for answer in asked["answers"])
    assert asked["answers"][0]["text"] == "answer 0 to: What is 3 plus 4?"
    assert (
        client.post("/api/rankings", json={"order": [[second], [first]], "annotator": "ann"}).status_code
        == 200
    )
    assert (
        client.post("/api/rankings", json={"order": [[first, second]], "annotator": "ann"}).status_code == 200
    )
    assert client.post(
        "/api/ratings", json={"answer_id": first, "rating": "up", "annotator": "ann"}
    ).json() == {
        "rating_id": 1,
        "corrected_answer_id": None,
    }
    corrected = client.post(
        "/api/ratings", json={"answer_id": second, "rating": "down", "correction": "7.", "annotator": "ann"}
    ).json()
    assert corrected["corrected_answer_id"] == 3
    stats = client.get("/api/stats").json()
    assert stats["counts"]["rankings"] == 2 and stats["counts"]["corrections"] == 1
    assert stats["exports"] == {"no_robots": 2, "hh_rlhf": 1}
    assert stats["recent"]["answers"][0]["text"] == "7."
    pairs = [json.loads(line) for line in client.get("/api/export/hh_rlhf.jsonl").text.splitlines()]
    assert pairs == [
        {
            "chosen": "\n\nHuman: What is 3 plus 4?\n\nAssistant: answer 1 to: What is 3 plus 4?",
            "rejected": "\n\nHuman: What is 3 plus 4?\n\nAssistant: answer 0 to: What is 3 plus 4?",
        }
    ]
    sft = [json.loads(line) for line in client.get("/api/export/no_robots.jsonl").text.splitlines()]
    assert [row["messages"][-1]["content"] for row in sft] == ["answer 0 to: What is 3 plus 4?", "7."]
    with FeedbackStore.open(db) as store:
        answer = store.rows("answers")[-1]
    assert answer["source"] == "echo-model" and answer["renderer"] == "role_colon"


BAD_REQUESTS = [
    ("empty question", "/api/questions", {"question": "   ", "annotator": "ann"}, 422, "question"),
    ("question missing", "/api/questions", {"annotator": "ann"}, 422, "question"),
    ("too many answers", "/api/questions", {"question": "Q?", "n": 99}, 422, "n"),
    ("empty annotator", "/api/questions", {"question": "Q?", "annotator": " "}, 422, "annotator"),
    ("unknown answer id", "/api/ratings", {"answer_id": 999, "rating": "up"}, 404, "answer_id"),
    ("bad rating", "/api/ratings", {"answer_id": 1, "rating": "meh"}, 422, "rating"),
    (
        "empty correction",
        "/api/ratings",
        {"answer_id": 1, "rating": "down", "correction": ""},
        422,
        "correction",
    ),
    ("ranking of one answer", "/api/rankings", {"order": [[1]]}, 422, "order"),
    ("ranking an unknown answer", "/api/rankings", {"order": [[1], [999]]}, 404, "answer_id"),
    ("ranking across questions", "/api/rankings", {"order": [[1], [3]]}, 422, "order"),
    ("ranking of strings", "/api/rankings", {"order": [["a"], ["b"]]}, 422, "order.0.0"),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "status", "field"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_every_bad_request_is_a_4xx_json_error_and_writes_nothing(
    client: TestClient, db: Path, name: str, path: str, body: dict, status: int, field: str
) -> None:
    ask(client, "Q1?")  # answers 1, 2
    ask(client, "Q2?")  # answers 3, 4
    before = counts(db)
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field and error["error"]
    assert counts(db) == before


def test_a_body_that_is_not_json_is_refused(client: TestClient) -> None:
    response = client.post(
        "/api/questions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"]


def test_an_unknown_export_is_refused(client: TestClient) -> None:
    response = client.get("/api/export/alpaca.jsonl")
    assert response.status_code == 422 and "no_robots" in response.json()["error"]


def test_a_database_that_is_not_ours_is_refused_by_every_api_call(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    with TestClient(create_app(str(path), EchoAnswerer())) as client:
        for response in (
            client.get("/api/stats"),
            client.post("/api/questions", json={"question": "Q?"}),
            client.post("/api/ratings", json={"answer_id": 1, "rating": "up"}),
            client.post("/api/rankings", json={"order": [[1], [2]]}),
            client.get("/api/export/hh_rlhf.jsonl"),
        ):
            assert response.status_code == 409
            assert response.json()["type"] == "NotAFeedbackDatabaseError"
            assert "not a feedback database" in response.json()["error"]
        assert client.get("/").status_code == 200  # the page loads and shows the message
    assert [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")] == ["songs"]


def test_the_cli_refuses_a_database_that_is_not_ours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cookbook.feedback.__main__ import main

    path = tmp_path / "other.sqlite"
    path.write_text("plain text, not SQLite at all, padded to be read as a header " * 2)
    assert main(["serve", "--db", str(path)]) == 2
    assert "not a feedback database" in capsys.readouterr().err
