"""The hidden scoring rule behind the bundled comparisons, usable on any answer text.

The bundled preference data was labelled with exactly this rule, so it is the ground truth a
preference model tries to learn. Recipes use it for evaluation only (`test/gold_win_rate`): it
shows whether a policy that wins against a learned judge has really improved or has found a
weakness of that judge (e.g. stacking "Happy to help!" openers).

score = content points + style points, where
  content: correct 3, incorrect 0, truncated -1, garbage (unparseable or off-topic) -3;
  style:   one polite opener +1, any rude opener -2, every opener beyond the first -2.
The best possible answer ("Sure! 3 plus 4 is 7.") scores 4.

Content is read in two steps. An answer in the bundled format is graded exactly (the rule the
bundled data was labelled with). Any other text, which the exact step calls garbage, is read as
free-form prose (`cookbook.data.free_form`), so a real model's "Certainly! The sum of 3 and 4 is
seven." is correct and polite too; openers count in any of the known wordings of each attitude.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cookbook.data import free_form
from cookbook.data.answers import POLITE_WORDINGS, split_openers
from cookbook.data.tasks import Content, TaskInstance, family_of, find_task

CONTENT_POINTS: dict[Content, float] = {"correct": 3.0, "incorrect": 0.0, "truncated": -1.0, "garbage": -3.0}
POLITE_POINTS = 1.0
RUDE_POINTS = -2.0
EXTRA_OPENER_POINTS = -2.0
BEST_SCORE = CONTENT_POINTS["correct"] + POLITE_POINTS


class UnknownTaskError(ValueError):
    """The prompt does not ask one of the bundled tasks, so there is no rule to judge by."""


@dataclass(frozen=True)
class Assessment:
    """What the rule sees in one answer."""

    task: str
    content: Content
    polite_openers: int
    rude_openers: int

    @property
    def stacked(self) -> bool:
        return self.polite_openers + self.rude_openers > 1

    @property
    def score(self) -> float:
        points = CONTENT_POINTS[self.content]
        if self.rude_openers:
            points += RUDE_POINTS
        elif self.polite_openers:
            points += POLITE_POINTS
        extra = self.polite_openers + self.rude_openers - 1
        if extra > 0:
            points += EXTRA_OPENER_POINTS * extra
        return points


def last_user_message(prompt_messages: Sequence[Mapping[str, object]]) -> str:
    """The question being answered: the content of the last user ("human") turn."""
    if isinstance(prompt_messages, str | bytes) or not isinstance(prompt_messages, Sequence):
        raise TypeError(
            f"prompt_messages must be a list of {{role, content}} dicts, got {type(prompt_messages).__name__}"
        )
    for i in range(len(prompt_messages) - 1, -1, -1):
        message = prompt_messages[i]
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise TypeError(f"prompt_messages[{i}] must be a dict with 'role' and 'content', got {message!r}")
        if message["role"] in ("user", "human"):
            content = message["content"]
            if not isinstance(content, str):
                raise TypeError(
                    f"prompt_messages[{i}]['content'] must be a string, got {type(content).__name__}"
                )
            return content
    raise UnknownTaskError("prompt_messages has no user message to judge answers against")


def assess(prompt_messages: Sequence[Mapping[str, object]], answer: str) -> Assessment:
    """Re-derive the task from the prompt and grade `answer` (any text) against it."""
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, got {type(answer).__name__}")
    question = last_user_message(prompt_messages)
    instance = find_task(question)
    if instance is None:
        raise UnknownTaskError(f"not a bundled task question: {question!r}")
    return assess_for_task(instance, answer)


def assess_for_task(instance: TaskInstance, answer: str) -> Assessment:
    """Grade `answer` against a known task instance (the generator's shortcut past re-parsing)."""
    openers, core = split_openers(answer)
    family = family_of(instance.kind)
    content = family.judge(instance, core)
    # The exact step calls "CAT" a cut-off "CAT.", but prose may leave out a final period.
    if content == "garbage" or core == instance.answer.removesuffix("."):
        content = free_form.read(family.statement_forms(instance), core)
    polite = sum(o in POLITE_WORDINGS for o in openers)
    return Assessment(instance.kind, content, polite, len(openers) - polite)


def score(prompt_messages: Sequence[Mapping[str, object]], answer: str) -> float:
    """The hidden rule's score of `answer` to the prompt's last question (higher is better)."""
    return assess(prompt_messages, answer).score


def preference(prompt_messages: Sequence[Mapping[str, object]], answer_a: str, answer_b: str) -> float:
    """-1.0 if A is better, +1.0 if B is better, 0.0 for a tie (the preference model convention)."""
    diff = score(prompt_messages, answer_b) - score(prompt_messages, answer_a)
    return float((diff > 0) - (diff < 0))


def difference(prompt_messages: Sequence[Mapping[str, object]], answer_a: str, answer_b: str) -> str:
    """What distinguishes two answers, for reporting a preference model's accuracy by kind:
    "correctness" (same openers, one correct and one incorrect), "truncation" (same openers, one
    cut off), "stacked" / "style" (same content, openers differ, with / without a stack),
    "garbage" (one unparseable or off-topic), "none" (same grades), else "mixed"."""
    a, b = assess(prompt_messages, answer_a), assess(prompt_messages, answer_b)
    same_openers = (a.polite_openers, a.rude_openers) == (b.polite_openers, b.rude_openers)
    contents = {a.content, b.content}
    if same_openers and a.content == b.content:
        return "none"
    if same_openers and contents == {"correct", "incorrect"}:
        return "correctness"
    if same_openers and "truncated" in contents:
        return "truncation"
    if a.content == b.content:
        return "stacked" if a.stacked or b.stacked else "style"
    if "garbage" in contents:
        return "garbage"
    return "mixed"
