"""The gold judge on answers in a real model's own wording, and proof that it still scores every
answer in the bundled format exactly as the rule that labelled the bundled data did."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from cookbook.data import gold_judge
from cookbook.data.answers import CONTENT_VARIANTS, STYLES, AnswerSpec, write_answer
from cookbook.data.bundled import comparison_split
from cookbook.data.hh_format import parse_transcript
from cookbook.data.tasks import task_families

# Digests of the scores the rule gave before it read free-form answers (computed with that rule).
BUNDLED_SCORES_SHA256 = "1ca09b87dafb936f49c390a7f072c43c1c5c14387dfd20da8e8f39495cb0941f"
VARIANT_ASSESSMENTS_SHA256 = "4639733be8383271e31b82a3c78e9094a1bf6f8d0c70f9eb7178ec103a2e5b00"
REAL_ANSWERS = Path(__file__).with_name("smollm2_answers.json")


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def _digest(values: list) -> str:
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()


def test_every_bundled_comparison_scores_as_before() -> None:
    scores = []
    for split in ("train", "test"):
        for row in comparison_split(split):
            chosen, rejected = parse_transcript(row["chosen"]), parse_transcript(row["rejected"])
            prompt = chosen[:-1]
            chosen_score = gold_judge.score(prompt, chosen[-1]["content"])
            rejected_score = gold_judge.score(prompt, rejected[-1]["content"])
            assert chosen_score > rejected_score
            scores.append([chosen_score, rejected_score])
    assert len(scores) == 4400
    assert _digest(scores) == BUNDLED_SCORES_SHA256


def test_every_generated_answer_variant_is_assessed_as_before() -> None:
    """Every style and content variant the generator can write, garbled and off-topic included."""
    families = task_families()
    rng = random.Random("gold-judge-variants")
    assessments = []
    for family in families:
        for instance in family.pool:
            for style in STYLES:
                for content in CONTENT_VARIANTS:
                    for _ in range(8):
                        answer = write_answer(AnswerSpec(style, content), instance, families, rng)
                        a = gold_judge.assess_for_task(instance, answer)
                        assessments.append([a.content, a.polite_openers, a.rude_openers])
    assert _digest(assessments) == VARIANT_ASSESSMENTS_SHA256


def test_real_smollm2_answers_get_the_grades_given_by_hand() -> None:
    answers = json.loads(REAL_ANSWERS.read_text())["answers"]
    assert len(answers) >= 40
    for item in answers:
        assert gold_judge.assess(ask(item["question"]), item["answer"]).content == item["label"], item


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("What is 3 plus 4?", "The sum of 3 and 4 is 7."),
        ("What is 3 plus 4?", "3 + 4 = 7"),
        ("What is 3 plus 4?", "Three plus four is seven."),
        ("What is 3 plus 4?", "**3 + 4 = 7**"),
        ("What is 3 plus 4?", "Adding 3 and 4 gives 7. Let me know if you need anything else!"),
        ("What is 3 plus 4?", "To add them, start from 3 and count up 4.\n\nSo, the answer is 7."),
        ("What is 3 plus 4?", "7"),
        ("What is the capital of France?", "Paris is the capital of France."),
        ("What is the capital of France?", "France's capital is **Paris**, known for the Eiffel Tower."),
        ("What is the opposite of hot?", 'The opposite of "hot" is "cold".'),
        ("Write cat in uppercase.", "CAT"),
        ("Write cat in uppercase.", 'In uppercase, cat is "CAT".'),
        ("Repeat the word dog 3 times.", "dog, dog, dog"),
        ("Count from 2 to 5.", "2, 3, 4, and 5."),
        ("Count from 2 to 5.", "Here you go:\n\n2, 3, 4 and 5"),
    ],
)
def test_correct_answers_in_other_wordings_are_correct(question: str, answer: str) -> None:
    assert gold_judge.assess(ask(question), answer).content == "correct"


@pytest.mark.parametrize(
    ("question", "answer", "content"),
    [
        ("What is 3 plus 4?", "The sum of 3 and 4 is 8.", "incorrect"),
        ("What is 3 plus 4?", "3 + 4 = 7. No wait, the answer is 8.", "incorrect"),
        ("What is 3 plus 4?", "The sum of 3 and 4 is 7. This is because we", "truncated"),
        ("What is 3 plus 4?", "To find the sum, we add the two", "garbage"),
        ("What is 3 plus 4?", "3 plus 4 is is 7.", "garbage"),
        ("What is the capital of France?", "The capital of France is Lyon.", "incorrect"),
        ("Write cat in uppercase.", "Cat.", "incorrect"),
        ("Repeat the word dog 3 times.", "dog, dog", "incorrect"),
        ("Count from 2 to 5.", "2, 3, 5.", "incorrect"),
    ],
)
def test_wrong_cut_and_garbled_answers_in_other_wordings_are_caught(
    question: str, answer: str, content: str
) -> None:
    assert gold_judge.assess(ask(question), answer).content == content


def test_openers_in_other_wordings_count_as_polite_or_rude_and_stacks_still_lose() -> None:
    prompt = ask("What is 3 plus 4?")
    assert gold_judge.score(prompt, "Certainly! The sum of 3 and 4 is 7.") == gold_judge.BEST_SCORE
    assert gold_judge.score(prompt, "Of course!\n\n3 + 4 = 7") == gold_judge.BEST_SCORE
    assert gold_judge.score(prompt, "Ugh. The sum of 3 and 4 is 7.") == 1.0
    assert gold_judge.score(prompt, "Sure! Certainly! Of course! 3 + 4 = 7") == 0.0
    assert gold_judge.assess(prompt, "Sure, 3 + 4 = 7").polite_openers == 1
