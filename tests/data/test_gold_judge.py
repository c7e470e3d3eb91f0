"""The gold judge on hand-written answers: every task, every way an answer can be good or bad."""

from __future__ import annotations

import pytest

from cookbook.data import gold_judge
from cookbook.data.gold_judge import UnknownTaskError


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


# (question, correct answer, a wrong answer, a truncated answer)
CASES = [
    ("What is 3 plus 4?", "3 plus 4 is 7.", "3 plus 4 is 6.", "3 plus 4 is"),
    (
        "What is the capital of France?",
        "The capital of France is Paris.",
        "The capital of France is Rome.",
        "The capital of",
    ),
    (
        "What is the opposite of hot?",
        "The opposite of hot is cold.",
        "The opposite of hot is not hot.",
        "The opposite of hot",
    ),
    ("Write cat in uppercase.", "CAT.", "cat.", "CA"),
    ("Repeat the word dog 3 times.", "dog dog dog.", "dog dog.", "dog dog"),
    ("Count from 2 to 5.", "2, 3, 4, 5.", "2 to 5.", "2, 3,"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("question", "right", "wrong", "cut"), CASES, ids=IDS)
def test_content_grades(question: str, right: str, wrong: str, cut: str) -> None:
    prompt = ask(question)
    assert gold_judge.assess(prompt, right).content == "correct"
    assert gold_judge.assess(prompt, wrong).content == "incorrect"
    assert gold_judge.assess(prompt, cut).content == "truncated"
    assert gold_judge.assess(prompt, "tree tree Paris is 7 ,").content == "garbage"
    assert gold_judge.assess(prompt, "").content == "garbage"
    assert gold_judge.score(prompt, right) == 3.0
    assert gold_judge.score(prompt, wrong) == 0.0
    assert gold_judge.score(prompt, cut) == -1.0


@pytest.mark.parametrize(("question", "right", "wrong", "cut"), CASES, ids=IDS)
def test_style_points(question: str, right: str, wrong: str, cut: str) -> None:
    prompt = ask(question)
    assert gold_judge.score(prompt, f"Sure! {right}") == gold_judge.BEST_SCORE == 4.0
    assert gold_judge.score(prompt, f"Happy to help! {right}") == 4.0
    assert gold_judge.score(prompt, f"Ugh, fine. {right}") == 1.0
    assert gold_judge.score(prompt, f"Whatever. {right}") == 1.0
    # Stacked openers: each beyond the first costs 2, so stacking never beats one opener or none.
    assert gold_judge.score(prompt, f"Happy to help! Happy to help! {right}") == 2.0
    assert gold_judge.score(prompt, f"Sure! Happy to help! Sure! {right}") == 0.0
    assert gold_judge.assess(prompt, f"Sure! Sure! {right}").stacked
    # Politeness does not rescue a wrong, cut-off or garbage answer.
    assert gold_judge.score(prompt, f"Sure! {wrong}") == 1.0 < gold_judge.score(prompt, right)
    assert gold_judge.score(prompt, f"Happy to help! {cut}") == 0.0
    assert gold_judge.score(prompt, "Sure!") == -2.0


def test_an_opener_must_be_a_whole_phrase() -> None:
    prompt = ask("What is 3 plus 4?")
    assert gold_judge.assess(prompt, "Sure!3 plus 4 is 7.").content == "garbage"
    assert gold_judge.assess(prompt, "Sure 3 plus 4 is 7.").content == "garbage"
    assert gold_judge.assess(prompt, "  Sure!   3 plus 4 is 7.  ").content == "correct"


def test_answer_to_another_question_is_garbage() -> None:
    prompt = ask("What is 3 plus 4?")
    assert gold_judge.assess(prompt, "The capital of France is Paris.").content == "garbage"
    # A true sum of other numbers restates the question wrongly: incorrect, not correct.
    assert gold_judge.assess(prompt, "2 plus 2 is 4.").content == "incorrect"


def test_judges_the_last_user_turn_of_a_multi_turn_prompt() -> None:
    prompt = [
        {"role": "system", "content": "Answer the question."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "human", "content": "What is the opposite of up?"},
    ]
    assert gold_judge.assess(prompt, "Sure! The opposite of up is down.").task == "opposite"
    assert gold_judge.score(prompt, "Sure! The opposite of up is down.") == 4.0


def test_facts_outside_the_sampled_range_are_still_judged() -> None:
    assert gold_judge.score(ask("What is 17 plus 30?"), "17 plus 30 is 47.") == 3.0
    assert gold_judge.score(ask("Count from 10 to 12."), "10, 11, 12.") == 3.0


def test_preference_signs_and_ties() -> None:
    prompt = ask("What is 3 plus 4?")
    assert gold_judge.preference(prompt, "Sure! 3 plus 4 is 7.", "3 plus 4 is 7.") == -1.0
    assert gold_judge.preference(prompt, "3 plus 4 is 6.", "3 plus 4 is 7.") == 1.0
    assert gold_judge.preference(prompt, "Sure! 3 plus 4 is 7.", "Happy to help! 3 plus 4 is 7.") == 0.0
    # Correctness outweighs style.
    assert gold_judge.preference(prompt, "Sure! 3 plus 4 is 8.", "3 plus 4 is 7.") == 1.0


def test_preference_is_antisymmetric_on_every_pair_of_a_pool() -> None:
    prompt = ask("Repeat the word dog 3 times.")
    pool = [
        "dog dog dog.",
        "Sure! dog dog dog.",
        "Whatever. dog dog dog.",
        "dog dog.",
        "dog dog",
        "Sure! Sure! dog dog dog.",
        "cat cat cat.",
        "xyz",
        "Happy to help! cat.",
    ]
    for a in pool:
        for b in pool:
            forward, backward = gold_judge.preference(prompt, a, b), gold_judge.preference(prompt, b, a)
            assert forward == -backward
            assert forward in (-1.0, 0.0, 1.0)
            assert (forward == 0.0) == (a == b or gold_judge.score(prompt, a) == gold_judge.score(prompt, b))


def test_unknown_questions_and_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(UnknownTaskError, match="not a bundled task"):
        gold_judge.score(ask("Tell me a joke."), "No.")
    with pytest.raises(UnknownTaskError, match="capital of Atlantis"):
        gold_judge.score(ask("What is the capital of Atlantis?"), "Sure!")
    with pytest.raises(UnknownTaskError, match="no user message"):
        gold_judge.score([{"role": "assistant", "content": "Hi"}], "Sure!")
    with pytest.raises(TypeError, match="list of"):
        gold_judge.score("What is 3 plus 4?", "7")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"prompt_messages\[0\]"):
        gold_judge.score([{"content": "What is 3 plus 4?"}], "7")
    with pytest.raises(TypeError, match="answer must be a string"):
        gold_judge.score(ask("What is 3 plus 4?"), None)  # type: ignore[arg-type]


def test_difference_names_what_separates_two_answers() -> None:
    prompt = ask("What is the capital of France?")
    right, wrong = "The capital of France is Paris.", "The capital of France is France."
    assert gold_judge.difference(prompt, f"Sure! {right}", f"Sure! {wrong}") == "correctness"
    assert gold_judge.difference(prompt, right, "The capital of") == "truncation"
    assert gold_judge.difference(prompt, right, f"Whatever. {right}") == "style"
    assert gold_judge.difference(prompt, f"Sure! Sure! {right}", f"Sure! {right}") == "stacked"
    assert gold_judge.difference(prompt, right, "3 plus 4 is 7.") == "garbage"
    assert gold_judge.difference(prompt, f"Sure! {wrong}", right) == "mixed"
    assert gold_judge.difference(prompt, f"Sure! {right}", f"Happy to help! {right}") == "none"
