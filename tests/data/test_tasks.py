"""Task families: questions re-derive their task, and every generated variant grades as intended."""

from __future__ import annotations

import random

import pytest

from cookbook.data import facts
from cookbook.data.answers import AnswerSpec, split_openers, truncate, write_answer
from cookbook.data.gold_judge import assess_for_task
from cookbook.data.tasks import find_task, task_families

FAMILIES = task_families()


@pytest.mark.parametrize("family", FAMILIES, ids=[f.kind for f in FAMILIES])
def test_questions_round_trip_and_variants_grade_as_written(family) -> None:
    rng = random.Random(0)
    for _ in range(60):
        instance = family.sample(rng)
        assert find_task(instance.question) == instance
        assert instance.wrong_answers and instance.answer not in instance.wrong_answers
        assert family.judge(instance, instance.answer) == "correct"
        for wrong in instance.wrong_answers:
            assert family.judge(instance, wrong) == "incorrect", wrong
        assert family.judge(instance, truncate(instance.answer, rng)) == "truncated"
        for content, expected in (
            ("correct", {"correct"}),
            ("incorrect", {"incorrect"}),
            ("truncated", {"truncated"}),
            ("garbled", {"incorrect", "garbage"}),
            ("offtopic", {"garbage"}),
        ):
            for style in ("plain", "polite", "rude", "stacked"):
                text = write_answer(AnswerSpec(style, content), instance, FAMILIES, rng)
                graded = assess_for_task(instance, text)
                assert graded.content in expected, text
                assert graded.stacked == (style == "stacked"), text


def test_split_openers_reads_stacks_of_any_known_opener() -> None:
    assert split_openers("Sure! Whatever. Happy to help! 1, 2, 3.") == (
        ["Sure!", "Whatever.", "Happy to help!"],
        "1, 2, 3.",
    )
    assert split_openers("Happy to help!") == (["Happy to help!"], "")
    assert split_openers("Surely 3.") == ([], "Surely 3.")
    assert all(split_openers(f"{o} x.") == ([o], "x.") for o in facts.POLITE_OPENERS + facts.RUDE_OPENERS)


def test_sampling_stays_inside_the_small_fact_spaces() -> None:
    rng = random.Random(1)
    add = task_families(max_operand=2)[0]
    questions = {add.sample(rng).question for _ in range(200)}
    assert len(questions) == 4  # operands 1..2


def test_unknown_style_or_content_is_rejected() -> None:
    instance = FAMILIES[0].sample(random.Random(0))
    with pytest.raises(ValueError, match="unknown answer style"):
        write_answer(AnswerSpec("shouty", "correct"), instance, FAMILIES, random.Random(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown content variant"):
        write_answer(AnswerSpec("plain", "lies"), instance, FAMILIES, random.Random(0))  # type: ignore[arg-type]
