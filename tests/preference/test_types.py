"""Comparison and LabeledComparison: swapping, labels, validation, and the JSON row form."""

from __future__ import annotations

import pytest

from cookbook.preference import Comparison, LabeledComparison
from cookbook.preference.types import PreferenceModel, sign

PROMPT = [{"role": "user", "content": "What is 2 plus 2?"}]
GOOD = [{"role": "assistant", "content": "4."}]
BAD = [{"role": "assistant", "content": "5."}]


def test_swap_exchanges_the_completions_and_twice_is_identity() -> None:
    comparison = Comparison(PROMPT, GOOD, BAD)
    swapped = comparison.swap()
    assert swapped.completion_A == BAD and swapped.completion_B == GOOD
    assert swapped.prompt_conversation == PROMPT
    assert swapped.swap() == comparison


def test_labeled_swap_flips_the_label_with_the_completions() -> None:
    labeled = LabeledComparison(Comparison(PROMPT, GOOD, BAD), "A", {"kind": "correctness"})
    swapped = labeled.swap()
    assert swapped.label == "B" and swapped.comparison.completion_B == GOOD
    assert swapped.tags == {"kind": "correctness"} and swapped.kind == "correctness"
    # the better completion is the same one whichever order it is shown in
    assert labeled.chosen_and_rejected() == swapped.chosen_and_rejected() == (GOOD, BAD)
    tie = LabeledComparison(Comparison(PROMPT, GOOD, BAD), "Tie")
    assert tie.swap().label == "Tie"
    with pytest.raises(ValueError, match="tied"):
        tie.chosen_and_rejected()


def test_bad_input_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="label must be one of"):
        LabeledComparison(Comparison(PROMPT, GOOD, BAD), "C")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"completion_A must hold at least one message"):
        Comparison(PROMPT, [], BAD)
    with pytest.raises(ValueError, match=r"completion_B\[0\]\.content must be a string"):
        Comparison(PROMPT, GOOD, [{"role": "assistant", "content": 5}])
    with pytest.raises(ValueError, match="prompt_conversation must be a list"):
        Comparison("What is 2 plus 2?", GOOD, BAD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tags must map strings to strings"):
        LabeledComparison(Comparison(PROMPT, GOOD, BAD), "A", {"kind": 3})  # type: ignore[dict-item]


def test_dict_round_trip_and_arrow_style_none_keys() -> None:
    labeled = LabeledComparison(Comparison(PROMPT, GOOD, BAD), "B", {"kind": "style"})
    assert LabeledComparison.from_dict(labeled.to_dict()) == labeled
    # Arrow gives every message the union of all messages' keys, absent ones as None
    row = {
        "comparison": {
            "prompt_conversation": [{"role": "user", "content": "hi", "trainable": None}],
            "completion_A": GOOD,
            "completion_B": BAD,
        },
        "label": "A",
        "tags": {"kind": None},
    }
    parsed = LabeledComparison.from_dict(row)
    assert parsed.comparison.prompt_conversation == [{"role": "user", "content": "hi"}] and parsed.tags == {}
    with pytest.raises(ValueError, match="needs 'comparison'"):
        LabeledComparison.from_dict({"label": "A"})


def test_default_judgement_is_the_sign_of_the_score() -> None:
    import asyncio

    class Fixed(PreferenceModel):
        def __init__(self, value: float):
            self.value = value

        async def __call__(self, comparison: Comparison) -> float:
            return self.value

    comparison = Comparison(PROMPT, GOOD, BAD)
    for value, hard in ((0.3, 1.0), (-0.7, -1.0), (0.0, 0.0)):
        judgement = asyncio.run(Fixed(value).judge(comparison))
        assert judgement.soft == value and judgement.hard == hard == sign(value)
