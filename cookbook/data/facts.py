"""The small fact tables behind the bundled tasks.

They are deliberately tiny: a 0.6M-parameter model must be able to memorise every fact during
SFT, and the preference model must be able to tell a right answer from a wrong one after a few
hundred steps. Every word here is also covered by the built-in tokenizer's training corpus.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Peru", "Lima"),
)

# Each pair is used in both directions.
ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("up", "down"),
    ("light", "dark"),
    ("open", "closed"),
    ("full", "empty"),
)

# Short common nouns for the casing and repetition tasks.
WORDS: tuple[str, ...] = ("cat", "dog", "red", "blue", "apple", "tree", "fish", "bird", "moon", "sun")

# The openers the generator writes (and so the only ones in the bundled data).
POLITE_OPENERS: tuple[str, ...] = ("Sure!", "Happy to help!")
RUDE_OPENERS: tuple[str, ...] = ("Ugh, fine.", "Whatever.")
# Other wordings of the same two attitudes, which the gold judge recognises in a real model's answers.
OTHER_POLITE_OPENERS: tuple[str, ...] = (
    "Sure,",
    "Sure.",
    "Sure thing!",
    "Certainly!",
    "Certainly.",
    "Certainly,",
    "Of course!",
    "Of course.",
    "Of course,",
    "Absolutely!",
    "Absolutely.",
    "Happy to help.",
    "Glad to help!",
    "I'd be happy to help!",
    "I'd be happy to help.",
    "I'd be glad to help!",
)
OTHER_RUDE_OPENERS: tuple[str, ...] = (
    "Ugh.",
    "Ugh,",
    "Fine.",
    "Whatever,",
    "Duh.",
    "Obviously,",
    "Seriously?",
)

# Numbers as words, for answers that spell out a number ("three plus four is seven").
NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)

GREETINGS: tuple[str, ...] = ("Hi!", "Hello!")
GREETING_REPLY = "Hello! How can I help you today?"
SYSTEM_PROMPTS: tuple[str, ...] = ("You are a helpful assistant.", "Answer the question.")


def _both_directions(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    table = dict(pairs)
    table.update((b, a) for a, b in pairs)
    return table


CAPITAL_OF: Mapping[str, str] = MappingProxyType(dict(CAPITALS))
OPPOSITE_OF: Mapping[str, str] = MappingProxyType(_both_directions(ANTONYM_PAIRS))
