"""Task families: how a question is asked, what its one correct answer is, and how to judge any
answer text against it.

Every family owns a question pattern (so a task can be re-derived from the prompt text alone,
which is what lets the gold judge grade answers a policy invents) and an answer pattern (so a
well-formed but wrong answer can be told apart from garbage). Answers restate the question
("3 plus 4 is 7.") so that checking correctness needs only local context.
"""

from __future__ import annotations

import functools
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cookbook.data import facts

Content = Literal["correct", "incorrect", "truncated", "garbage"]

_NUMBER = "|".join([r"\d+", *facts.NUMBER_WORDS])


def number_value(text: str) -> str | None:
    """A number written in digits or as a word, as digits ("seven" -> "7"); None if it is neither."""
    text = text.strip().lower()
    if text.isdigit():
        return str(int(text))
    return str(facts.NUMBER_WORDS.index(text)) if text in facts.NUMBER_WORDS else None


def _number_re(n: int) -> str:
    """`n` in digits or as a word, case-insensitive."""
    word = facts.NUMBER_WORDS[n] if n < len(facts.NUMBER_WORDS) else None
    return f"(?i:{n}|{word})" if word else str(n)


@dataclass(frozen=True)
class StatementForms:
    """How a free-form answer to one task instance may state its answer.

    A statement is a whole sentence: the value alone ("7"), or a subject, a verb and the value
    ("The sum of 3 and 4 is 7", "3 + 4 = 7"); `cookbook.data.free_form` reads them.
    `value` is a regex of any candidate value (right or wrong), `normalise` maps a matched value to
    the form `expected` is written in (None: not a value after all).
    """

    subjects: tuple[str, ...]
    value: str
    expected: str
    normalise: Callable[[str], str | None]


def _strip_quotes(text: str) -> str:
    return text.strip().strip("\"'“”‘’")


@dataclass(frozen=True)
class TaskInstance:
    """One concrete question, its correct answer, and two kinds of wrong answers.

    A *slip* is wrong in a way the answer itself shows (a word echoed from the question, a
    letter case not changed, a neighbour repeated); a *mistake* is a wrong fact that only
    knowing the fact reveals (a wrong capital, a wrong sum). Both score as incorrect.
    """

    kind: str
    question: str
    answer: str
    slips: tuple[str, ...]
    mistakes: tuple[str, ...]

    @property
    def wrong_answers(self) -> tuple[str, ...]:
        return self.slips + self.mistakes


class TaskFamily(ABC):
    """A kind of question. Subclasses define the patterns and the facts."""

    kind: str
    question_re: re.Pattern[str]
    answer_re: re.Pattern[str]

    @abstractmethod
    def space(self) -> list[TaskInstance]:
        """Every instance the generator may ask, in a fixed order."""

    @functools.cached_property
    def pool(self) -> tuple[TaskInstance, ...]:
        return tuple(self.space())

    def sample(self, rng: random.Random) -> TaskInstance:
        """A random instance from this family's (small) fact space."""
        return rng.choice(self.pool)

    @abstractmethod
    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        """The instance a matched question asks for, or None if its facts are unknown."""

    def parse(self, question: str) -> TaskInstance | None:
        m = self.question_re.fullmatch(question.strip())
        return self.from_match(m) if m else None

    @abstractmethod
    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        """How free-form answers to `instance` may state their answer."""

    def question_match(self, instance: TaskInstance) -> re.Match[str]:
        m = self.question_re.fullmatch(instance.question)
        if m is None:
            raise ValueError(f"{instance.question!r} is not a {self.kind} question")
        return m

    def judge(self, instance: TaskInstance, core: str) -> Content:
        """Grade an answer with its openers already removed."""
        core = core.strip()
        if core == instance.answer:
            return "correct"
        if core and instance.answer.startswith(core):
            return "truncated"
        if self.answer_re.fullmatch(core):
            return "incorrect"
        return "garbage"


def _distinct(values: list[str], exclude: str) -> tuple[str, ...]:
    """`values` without `exclude` and without repeats, order kept (for deterministic sampling)."""
    return tuple(v for v in dict.fromkeys(values) if v != exclude)


@dataclass(frozen=True)
class AddTask(TaskFamily):
    """Addition of two numbers in 1..max_operand (no zero, so an echoed operand is always wrong)."""

    max_operand: int = 4
    kind = "add"
    question_re = re.compile(r"What is (\d+) plus (\d+)\?")
    answer_re = re.compile(r"\d+ plus \d+ is \d+\.")

    def make(self, a: int, b: int) -> TaskInstance:
        s = a + b
        slips = [f"{a} plus {b} is {w}." for w in (b, a)]
        mistakes = [
            f"{a} plus {b} is {w}." for w in (s + 1, s - 1, s + 2, s - 2) if w >= 0 and w not in (a, b)
        ]
        answer = f"{a} plus {b} is {s}."
        return TaskInstance(
            self.kind, f"What is {a} plus {b}?", answer, _distinct(slips, answer), _distinct(mistakes, answer)
        )

    def space(self) -> list[TaskInstance]:
        return [
            self.make(a, b) for a in range(1, self.max_operand + 1) for b in range(1, self.max_operand + 1)
        ]

    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        return self.make(int(m.group(1)), int(m.group(2)))

    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        m = self.question_match(instance)
        a, b = int(m.group(1)), int(m.group(2))
        x, y = _number_re(a), _number_re(b)
        return StatementForms(
            subjects=(
                rf"{x} (?:plus|\+|and) {y}",
                rf"\({x} ?\+ ?{y}\)",
                rf"{x}\+{y}",
                rf"(?:the )?sum of {x} and {y}",
                rf"adding {x} (?:and|to) {y}",
                rf"{y} added to {x}",
                rf"if you add {y} to {x},?",
                rf"(?:when|if) you (?:start with|take) {x} and add {y},?",
            ),
            value=rf"(?i:{_NUMBER})",
            expected=str(a + b),
            normalise=number_value,
        )


@dataclass(frozen=True)
class CapitalTask(TaskFamily):
    """Capital cities of a handful of countries."""

    kind = "capital"
    question_re = re.compile(r"What is the capital of ([A-Z][a-z]+)\?")
    answer_re = re.compile(r"The capital of [A-Z][a-z]+ is [A-Z][a-z]+\.")

    def make(self, country: str) -> TaskInstance:
        capitals = facts.CAPITAL_OF
        answer = f"The capital of {country} is {capitals[country]}."
        mistakes = [f"The capital of {country} is {c}." for c in capitals.values()]
        return TaskInstance(
            self.kind,
            f"What is the capital of {country}?",
            answer,
            (f"The capital of {country} is {country}.",),
            _distinct(mistakes, answer),
        )

    def space(self) -> list[TaskInstance]:
        return [self.make(country) for country, _ in facts.CAPITALS]

    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        return self.make(m.group(1)) if m.group(1) in facts.CAPITAL_OF else None

    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        country = self.question_match(instance).group(1)
        return StatementForms(
            subjects=(
                rf"the capital(?: city)? of {country}",
                rf"{country}'s capital(?: city)?",
                r"its capital(?: city)?",
            ),
            value=rf"(?:the city of )?[A-Z][a-z]+(?:, {country})?",
            expected=facts.CAPITAL_OF[country],
            normalise=lambda text: text.removeprefix("the city of ").split(",")[0].strip(),
        )


@dataclass(frozen=True)
class OppositeTask(TaskFamily):
    """Antonyms, both directions of each pair."""

    kind = "opposite"
    question_re = re.compile(r"What is the opposite of ([a-z]+)\?")
    answer_re = re.compile(r"The opposite of [a-z]+ is (not )?[a-z]+\.")

    def make(self, word: str) -> TaskInstance:
        table = facts.OPPOSITE_OF
        answer = f"The opposite of {word} is {table[word]}."
        mistakes = [f"The opposite of {word} is {w}." for w in table if w != word]
        return TaskInstance(
            self.kind,
            f"What is the opposite of {word}?",
            answer,
            (f"The opposite of {word} is not {word}.",),
            _distinct(mistakes, answer),
        )

    def space(self) -> list[TaskInstance]:
        return [self.make(word) for word in facts.OPPOSITE_OF]

    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        return self.make(m.group(1)) if m.group(1) in facts.OPPOSITE_OF else None

    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        word = self.question_match(instance).group(1)
        return StatementForms(
            subjects=(rf"the opposite of (?:an? |the word )?[\"']?{word}[\"']?",),
            value=r"(?:an? |the word )?[\"']?[a-z]+[\"']?",
            expected=facts.OPPOSITE_OF[word],
            normalise=lambda text: _strip_quotes(re.sub(r"(?i)^(an?|the word) ", "", text.strip())).lower(),
        )


@dataclass(frozen=True)
class UpperTask(TaskFamily):
    """Write a word in uppercase letters."""

    kind = "upper"
    question_re = re.compile(r"Write ([a-z]+) in uppercase\.")
    answer_re = re.compile(r"[A-Za-z]+\.")

    def make(self, word: str) -> TaskInstance:
        answer = f"{word.upper()}."
        mistakes = [f"{w.upper()}." for w in facts.WORDS]
        return TaskInstance(
            self.kind,
            f"Write {word} in uppercase.",
            answer,
            _distinct([f"{word}.", f"{word.capitalize()}."], answer),
            _distinct(mistakes, answer),
        )

    def space(self) -> list[TaskInstance]:
        return [self.make(word) for word in facts.WORDS]

    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        return self.make(m.group(1))

    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        word = self.question_match(instance).group(1)
        return StatementForms(
            subjects=(
                rf"[\"']?{word}[\"']? in uppercase(?: letters)?",
                rf"the word [\"']?{word}[\"']? in uppercase(?: letters)?",
                rf"in uppercase(?: letters)?, [\"']?{word}[\"']?",
            ),
            # An uppercase word, or the word itself left as it was (a slip).
            value=rf"[\"']?(?:[A-Z]{{2,}}|{word}|{word.capitalize()})[\"']?",
            expected=word.upper(),
            normalise=_strip_quotes,
        )


@dataclass(frozen=True)
class RepeatTask(TaskFamily):
    """Repeat a word n times (n in 2..max_count)."""

    max_count: int = 3
    kind = "repeat"
    question_re = re.compile(r"Repeat the word ([a-z]+) (\d+) times\.")
    answer_re = re.compile(r"[a-z]+( [a-z]+)*( \d+)?\.")

    def make(self, word: str, n: int) -> TaskInstance:
        answer = " ".join([word] * n) + "."
        # Echoing the count from the question in place of the last word.
        slips = [" ".join([word] * (n - 1) + [str(n)]) + "."]
        mistakes = [" ".join([word] * k) + "." for k in (n - 1, n + 1) if k >= 1]
        return TaskInstance(
            self.kind,
            f"Repeat the word {word} {n} times.",
            answer,
            _distinct(slips, answer),
            _distinct(mistakes, answer),
        )

    def space(self) -> list[TaskInstance]:
        return [self.make(word, n) for word in facts.WORDS for n in range(2, self.max_count + 1)]

    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        n = int(m.group(2))
        return self.make(m.group(1), n) if 1 <= n <= 20 else None

    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        m = self.question_match(instance)
        word = m.group(1)
        # The word again and again, all with one separator (a space, or a comma and a space).
        return StatementForms(
            subjects=(rf"[\"']?{word}[\"']? (?:repeated )?{_number_re(int(m.group(2)))} times",),
            value=rf"(?:{word}|{word.capitalize()})(?:(?: {word})*|(?:, {word})+)",
            expected=" ".join([word] * int(m.group(2))),
            normalise=lambda text: " ".join(text.lower().replace(",", " ").split()),
        )


@dataclass(frozen=True)
class CountTask(TaskFamily):
    """List the numbers from a to b (a short run of consecutive numbers)."""

    kind = "count"
    question_re = re.compile(r"Count from (\d+) to (\d+)\.")
    answer_re = re.compile(r"\d+((, \d+)*| to \d+)\.")

    def make(self, a: int, b: int) -> TaskInstance:
        run = list(range(a, b + 1))
        answer = ", ".join(map(str, run)) + "."
        skipped = [", ".join(map(str, run[:i] + run[i + 1 :])) + "." for i in range(1, len(run) - 1)]
        overshoot = ", ".join(map(str, [*run, b + 1])) + "."
        # The slip echoes the question's range instead of listing it.
        return TaskInstance(
            self.kind,
            f"Count from {a} to {b}.",
            answer,
            (f"{a} to {b}.",),
            _distinct([*skipped, overshoot], answer),
        )

    def space(self) -> list[TaskInstance]:
        return [self.make(a, a + n) for a in range(1, 7) for n in (2, 3)]

    def from_match(self, m: re.Match[str]) -> TaskInstance | None:
        a, b = int(m.group(1)), int(m.group(2))
        return self.make(a, b) if 0 < b - a <= 20 else None

    def statement_forms(self, instance: TaskInstance) -> StatementForms:
        m = self.question_match(instance)
        a, b = int(m.group(1)), int(m.group(2))
        # Numbers all with one separator: "3, 4, 5", "3, 4 and 5", "3, 4, and 5".
        return StatementForms(
            subjects=(rf"counting from {a} to {b}(?: gives)?", rf"(?:the )?numbers from {a} to {b} are"),
            value=r"\d+(?:, \d+)+|\d+(?:, \d+)*,? and \d+",
            expected=", ".join(map(str, range(a, b + 1))),
            normalise=lambda text: ", ".join(re.findall(r"\d+", text)),
        )


@functools.cache
def task_families(max_operand: int = 4, max_repeat: int = 3) -> tuple[TaskFamily, ...]:
    """All families, in a fixed order (the generator samples a family uniformly)."""
    return (
        AddTask(max_operand),
        CapitalTask(),
        OppositeTask(),
        UpperTask(),
        RepeatTask(max_repeat),
        CountTask(),
    )


def find_task(question: str) -> TaskInstance | None:
    """The task a question asks for, whichever family phrased it; None if none did."""
    for family in task_families():
        instance = family.parse(question)
        if instance is not None:
            return instance
    return None


def family_of(kind: str) -> TaskFamily:
    for family in task_families():
        if family.kind == kind:
            return family
    raise KeyError(f"unknown task kind {kind!r}")
