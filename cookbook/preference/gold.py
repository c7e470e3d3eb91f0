"""The bundled data's gold judge as a preference model, and what distinguishes two answers.

`cookbook.data.gold_judge` is the hidden rule that labelled the bundled comparisons. As a
`PreferenceModel` it audits a policy the way a learned judge does (`test/gold_win_rate`),
which exposes reward hacking: a policy can beat a learned judge without beating the rule.
`comparison_kind` names the attributes (correctness, style, ...) in which the two answers of a
bundled comparison differ, so preference-model accuracy can be reported per kind.
It only understands prompts of the bundled tasks (anything else raises UnknownTaskError).
"""

from __future__ import annotations

from collections.abc import Sequence

import chz

from cookbook.data import gold_judge
from cookbook.preference.types import Comparison, PreferenceModel, PreferenceModelBuilder
from cookbook.renderers import Message


def completion_text(completion: Sequence[Message]) -> str:
    """The answer a completion gives: its last assistant message."""
    for message in reversed(completion):
        if message["role"] == "assistant":
            return message["content"]
    raise ValueError(f"the completion has no assistant message: {list(completion)!r:.200}")


class GoldPreferenceModel(PreferenceModel):
    """-1 / 0 / +1 from the hidden rule's scores of the two answers (no model, no server)."""

    async def __call__(self, comparison: Comparison) -> float:
        return gold_judge.preference(
            comparison.prompt_conversation,
            completion_text(comparison.completion_A),
            completion_text(comparison.completion_B),
        )


@chz.chz
class GoldPreferenceModelBuilder(PreferenceModelBuilder):
    def __call__(self) -> GoldPreferenceModel:
        return GoldPreferenceModel()


def _style(assessment: gold_judge.Assessment) -> str:
    if assessment.stacked:
        return "stacked"
    if assessment.rude_openers:
        return "rude"
    return "polite" if assessment.polite_openers else "plain"


def comparison_kind(comparison: Comparison) -> str:
    """Which attributes differ between A and B, as the rule sees them, joined by "+".

    Content differences are named by what is at stake: "correctness" (correct vs incorrect),
    "truncation" (one answer cut off), "garbage" (one answer unparseable or off-topic); style differences are
    "stacked" (several openers on one side) or "style". Identical assessments give "same".
    """
    prompt = comparison.prompt_conversation
    a = gold_judge.assess(prompt, completion_text(comparison.completion_A))
    b = gold_judge.assess(prompt, completion_text(comparison.completion_B))
    parts = []
    if a.content != b.content:
        contents = {a.content, b.content}
        parts.append(
            "garbage" if "garbage" in contents else "truncation" if "truncated" in contents else "correctness"
        )
    style_a, style_b = _style(a), _style(b)
    if style_a != style_b:
        parts.append("stacked" if "stacked" in (style_a, style_b) else "style")
    return "+".join(parts) or "same"
