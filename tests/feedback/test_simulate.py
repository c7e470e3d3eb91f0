"""The simulated annotator's judgments, and a simulated session through the app's HTTP API."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cookbook.feedback.app import create_app
from cookbook.feedback.serving import AppThread
from cookbook.feedback.simulate import bundled_questions, gold_annotator, simulate_async
from cookbook.feedback.store import FeedbackStore
from tests.feedback.fake_answerer import EchoAnswerer


def test_gold_ranks_by_score_with_ties_rates_and_corrects_the_first_bad_answer() -> None:
    answers = [
        (1, "The capital of France is Rome."),  # incorrect: 0
        (2, "Sure! The capital of France is Paris."),  # correct and polite: 4
        (3, "The capital of France is Paris."),  # correct: 3
        (4, "Ugh, fine. The capital of France is Paris."),  # correct and rude: 1
        (5, "The capital of France is Berlin."),  # incorrect: 0
    ]
    judgment = gold_annotator("What is the capital of France?", answers)
    assert judgment.order == [[2], [3], [4], [1, 5]]
    assert judgment.ratings == [
        (1, "down", "Happy to help! The capital of France is Paris."),
        (2, "up", None),
        (3, "up", None),
        (4, "down", None),
        (5, "down", None),
    ]


def test_bundled_questions_cycle_through_the_chat_training_questions() -> None:
    questions = bundled_questions(5)
    assert len(questions) == 5 and all(q.strip() for q in questions)
    assert questions == bundled_questions(5)


def test_a_simulated_session_goes_through_the_http_api(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    with AppThread(create_app(str(db), EchoAnswerer())) as url:
        asyncio.run(simulate_async(url, "gold", n=6, answers=3, concurrency=2))
    with FeedbackStore.open(db) as store:
        counts = store.counts()
        rankings = store.rankings()
    # echoed answers are garbage to the gold rule: all tie, all down, one correction per question
    assert (counts["questions"], counts["rankings"], counts["ratings"], counts["ratings_down"]) == (
        6,
        6,
        18,
        18,
    )
    assert (counts["answers"], counts["corrections"]) == (6 * 3 + 6, 6)
    assert all(r["positions"] == [0, 0, 0] for r in rankings)
    assert sorted(r["prompt"][-1]["content"] for r in rankings) == sorted(bundled_questions(6))
