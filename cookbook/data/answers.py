"""Answer variants: an opener style in front of a content variant of the task's answer.

An answer is `[openers...] core`. The style says which openers ("Sure!", "Ugh, fine.", or a
stack of polite ones), the content says what the core is (the correct answer, a wrong one,
a cut-off one, a garbled one, or an answer to a different question). Garbled answers are there
so that a preference model learns that text off the clean templates is bad: they look like what
a policy writes when RL pushes it away from its SFT distribution. `split_openers` inverts the opener part
for any text, which is how the gold judge reads answers that no generator wrote.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from cookbook.data import facts
from cookbook.data.tasks import TaskFamily, TaskInstance

Style = Literal["plain", "polite", "rude", "stacked"]
ContentVariant = Literal["correct", "incorrect", "truncated", "garbled", "offtopic"]

STYLES: tuple[Style, ...] = ("plain", "polite", "rude", "stacked")
CONTENT_VARIANTS: tuple[ContentVariant, ...] = ("correct", "incorrect", "truncated", "garbled", "offtopic")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class AnswerSpec:
    """Which variant of an answer to write."""

    style: Style
    content: ContentVariant


def openers_for(style: Style, rng: random.Random) -> list[str]:
    if style == "plain":
        return []
    if style == "polite":
        return [rng.choice(facts.POLITE_OPENERS)]
    if style == "rude":
        return [rng.choice(facts.RUDE_OPENERS)]
    if style == "stacked":
        return [rng.choice(facts.POLITE_OPENERS) for _ in range(rng.randint(2, 3))]
    raise ValueError(f"unknown answer style {style!r}")


def truncate(answer: str, rng: random.Random) -> str:
    """A non-empty proper prefix of `answer`, cut at a word boundary when it has several words."""
    words = answer.split(" ")
    if len(words) > 1:
        return " ".join(words[: rng.randint(1, len(words) - 1)])
    return answer[: max(1, len(answer) // 2)]


def _misspell(word: str, rng: random.Random) -> str:
    """One character edit: swap two neighbours, drop one, double one, or replace one."""
    i = rng.randrange(len(word))
    edit = rng.randrange(4)
    if edit == 0 and len(word) > 1:
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if edit == 1 and len(word) > 1:
        return word[:i] + word[i + 1 :]
    if edit == 2:
        return word[:i] + word[i] + word[i:]
    letter = rng.choice(_LETTERS)
    return word[:i] + (letter.upper() if word[i].isupper() else letter) + word[i + 1 :]


def garble(answer: str, rng: random.Random) -> str:
    """`answer` with one or two random edits (misspell, drop, double or swap in a foreign word),
    never equal to it and never a prefix of it (that would be a truncation)."""
    foreign = [*facts.WORDS, *facts.CAPITAL_OF.values(), *facts.OPPOSITE_OF, *map(str, range(10))]
    while True:
        words = answer.rstrip(".").split(" ")
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(words))
            edit = rng.randrange(4)
            if edit == 0:
                words[i] = _misspell(words[i], rng)
            elif edit == 1 and len(words) > 1:
                del words[i]
            elif edit == 2:
                words.insert(i, words[i])
            else:
                words[i] = rng.choice(foreign)
        garbled = " ".join(w for w in words if w) + "."
        if garbled != answer and not answer.startswith(garbled.rstrip(".")):
            return garbled


def core_for(
    content: ContentVariant,
    instance: TaskInstance,
    families: tuple[TaskFamily, ...],
    rng: random.Random,
    slip_frac: float = 0.5,
) -> str:
    """The answer core for a content variant; an incorrect core is a slip with probability `slip_frac`."""
    if content == "correct":
        return instance.answer
    if content == "incorrect":
        use_slip = instance.slips and (not instance.mistakes or rng.random() < slip_frac)
        return rng.choice(instance.slips if use_slip else instance.mistakes)
    if content == "truncated":
        return truncate(instance.answer, rng)
    if content == "garbled":
        return garble(instance.answer, rng)
    if content == "offtopic":
        others = [f for f in families if f.kind != instance.kind]
        return rng.choice(others).sample(rng).answer
    raise ValueError(f"unknown content variant {content!r}")


def write_answer(
    spec: AnswerSpec,
    instance: TaskInstance,
    families: tuple[TaskFamily, ...],
    rng: random.Random,
    slip_frac: float = 0.5,
) -> str:
    """The answer text for `spec`: openers, then the core, separated by single spaces."""
    core = core_for(spec.content, instance, families, rng, slip_frac)
    return " ".join([*openers_for(spec.style, rng), core])


POLITE_WORDINGS: tuple[str, ...] = facts.POLITE_OPENERS + facts.OTHER_POLITE_OPENERS
RUDE_WORDINGS: tuple[str, ...] = facts.RUDE_OPENERS + facts.OTHER_RUDE_OPENERS
# Longest first, so that "Ugh, fine." is read as one opener and not as "Ugh," and the rest.
KNOWN_OPENERS: tuple[str, ...] = tuple(sorted(POLITE_WORDINGS + RUDE_WORDINGS, key=len, reverse=True))


def split_openers(answer: str) -> tuple[list[str], str]:
    """Leading openers of any answer text and the rest (the core), e.g.
    "Sure! Sure! 3 plus 4 is 7." -> (["Sure!", "Sure!"], "3 plus 4 is 7."). An opener must be
    followed by whitespace or end the text ("Sure!3" has no opener)."""
    rest = answer.strip()
    found: list[str] = []
    progress = True
    while progress:
        progress = False
        for opener in KNOWN_OPENERS:
            if rest == opener or (rest.startswith(opener) and rest[len(opener)].isspace()):
                found.append(opener)
                rest = rest[len(opener) :].lstrip()
                progress = True
                break
    return found, rest
