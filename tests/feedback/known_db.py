"""A small feedback database whose every judgment is known, shared by the store, builder and app tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cookbook.feedback.store import FeedbackStore, NewAnswer

MODEL = "tiny-llama"
SAMPLING = {"temperature": 1.0, "max_tokens": 64}


@dataclass(frozen=True)
class KnownDB:
    path: Path
    add: list[
        int
    ]  # answers to "What is 3 plus 4?": "7." (up), "8." (down, corrected), "Sure! 7." (no rating)
    capital: list[
        int
    ]  # answers to "What is the capital of France?": "The capital of France is Paris.", "The capital of France is Rome."
    correction: int  # the corrected answer's id


def build_known_db(path: Path) -> KnownDB:
    """Two questions; one 3-way ranking with a tie, one 2-way ranking; two ratings, one correction."""
    with FeedbackStore.open(path) as store:
        _, add = store.add_question(
            "What is 3 plus 4?",
            [NewAnswer(text, MODEL, SAMPLING, "role_colon") for text in ("7.", "8.", "Sure! 7.")],
            "alice",
        )
        _, capital = store.add_question(
            [{"role": "user", "content": "What is the capital of France?"}],
            [
                NewAnswer("The capital of France is Paris.", MODEL, SAMPLING, "role_colon"),
                NewAnswer("The capital of France is Rome.", MODEL, SAMPLING, "role_colon"),
            ],
            "bob",
        )
        store.rank([[add[2]], [add[0], add[1]]], "alice")  # "Sure! 7." best; "7." ties "8."
        store.rank([[capital[0]], [capital[1]]], "bob")
        store.rate(add[0], "up", "alice")
        _, correction = store.rate(add[1], "down", "alice", correction="3 plus 4 is 7.")
    assert correction is not None
    return KnownDB(path, add, capital, correction)
