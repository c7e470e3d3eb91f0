"""Pairwise comparisons, their labels, and the preference-model interface.

A `Comparison` is one prompt with two candidate completions (each a list of messages, usually
one assistant message). A `LabeledComparison` says which one is better ("A", "B" or "Tie") and
may carry string tags (e.g. `kind`: which attributes of the two answers differ), so evaluators
can break accuracy down by kind. A `PreferenceModel` judges a comparison with a number in
[-1, 1]: -1 means A is better, +1 means B is better, 0 is a tie.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import chz

from cookbook.renderers import Message

Label = Literal["A", "B", "Tie"]
LABELS: tuple[str, ...] = get_args(Label)
_SWAPPED_LABEL: dict[str, Label] = {"A": "B", "B": "A", "Tie": "Tie"}


def _clean_messages(name: str, messages: Any, *, allow_empty: bool) -> list[Message]:
    """A copy of `messages` as plain message dicts; a ValueError naming the bad entry otherwise.

    Keys set to None are dropped: Arrow tables give every message the union of all keys.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ValueError(
            f"{name} must be a list of {{role, content}} messages, got {type(messages).__name__}"
        )
    if not messages and not allow_empty:
        raise ValueError(f"{name} must hold at least one message")
    cleaned: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(
                f"{name}[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}"
            )
        message = {k: v for k, v in message.items() if v is not None}
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise ValueError(f"{name}[{i}].{key} must be a string, got {message.get(key)!r:.80}")
        cleaned.append(message)  # type: ignore[arg-type]
    return cleaned


@dataclass(frozen=True)
class Comparison:
    """A prompt (conversation so far) and two completions of it."""

    prompt_conversation: list[Message]
    completion_A: list[Message]
    completion_B: list[Message]

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "prompt_conversation",
            _clean_messages("prompt_conversation", self.prompt_conversation, allow_empty=True),
        )
        object.__setattr__(
            self, "completion_A", _clean_messages("completion_A", self.completion_A, allow_empty=False)
        )
        object.__setattr__(
            self, "completion_B", _clean_messages("completion_B", self.completion_B, allow_empty=False)
        )

    def swap(self) -> Comparison:
        """The same comparison with the completions in the other order."""
        return Comparison(self.prompt_conversation, self.completion_B, self.completion_A)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_conversation": [dict(m) for m in self.prompt_conversation],
            "completion_A": [dict(m) for m in self.completion_A],
            "completion_B": [dict(m) for m in self.completion_B],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        missing = [k for k in ("prompt_conversation", "completion_A", "completion_B") if k not in data]
        if missing:
            raise ValueError(f"a comparison needs {missing} (got keys {sorted(data)})")
        return cls(data["prompt_conversation"], data["completion_A"], data["completion_B"])


@dataclass(frozen=True)
class LabeledComparison:
    """A comparison and which completion is better; `tags` are free-form row metadata."""

    comparison: Comparison
    label: Label
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        bad = {k: v for k, v in self.tags.items() if not (isinstance(k, str) and isinstance(v, str))}
        if bad:
            raise ValueError(f"tags must map strings to strings, got {bad!r}")
        object.__setattr__(self, "tags", dict(self.tags))

    def swap(self) -> LabeledComparison:
        """Completions swapped and the label flipped with them ("Tie" stays a tie)."""
        return LabeledComparison(self.comparison.swap(), _SWAPPED_LABEL[self.label], self.tags)

    def chosen_and_rejected(self) -> tuple[list[Message], list[Message]]:
        """(better completion, worse completion); a tie has neither."""
        if self.label == "Tie":
            raise ValueError("a tied comparison has no chosen and rejected completion")
        c = self.comparison
        return (c.completion_A, c.completion_B) if self.label == "A" else (c.completion_B, c.completion_A)

    @property
    def kind(self) -> str | None:
        """The `kind` tag (which attributes of the two completions differ), if the data set has one."""
        return self.tags.get("kind")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"comparison": self.comparison.to_dict(), "label": self.label}
        if self.tags:
            out["tags"] = dict(self.tags)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabeledComparison:
        """The inverse of `to_dict`: {"comparison": {...}, "label": "A"|"B"|"Tie", "tags"?: {...}}."""
        if not isinstance(data.get("comparison"), Mapping) or "label" not in data:
            raise ValueError(
                f"a labeled comparison needs 'comparison' (a dict) and 'label' (got keys {sorted(data)})"
            )
        tags = {k: v for k, v in (data.get("tags") or {}).items() if v is not None}
        return cls(Comparison.from_dict(data["comparison"]), data["label"], tags)


@dataclass(frozen=True)
class PreferenceJudgement:
    """One judgement of a comparison, in both of the forms evaluators report.

    soft: a score in [-1, 1] that keeps the judge's confidence; hard: its decision, -1, 0 or +1.
    """

    soft: float
    hard: float


def sign(value: float) -> float:
    return float((value > 0) - (value < 0))


class PreferenceModel(ABC):
    """Judges comparisons: -1 = A is better, +1 = B is better, 0 = tie (values in between allowed).

    Calls are coroutines so that many comparisons can be judged concurrently (a server batches
    the concurrent requests of model-based judges).
    """

    @abstractmethod
    async def __call__(self, comparison: Comparison) -> float:
        """The preference in [-1, 1]."""

    async def judge(self, comparison: Comparison) -> PreferenceJudgement:
        """Soft and hard forms of the judgement; by default the hard one is the sign of `__call__`."""
        value = await self(comparison)
        return PreferenceJudgement(soft=value, hard=sign(value))

    async def preferences(self, comparisons: Sequence[Comparison]) -> list[float]:
        """`__call__` of every comparison, in order; by default all of them in flight together.
        Model-based judges override it to score the whole list in one pass."""
        return list(await asyncio.gather(*(self(c) for c in comparisons)))

    async def judge_many(self, comparisons: Sequence[Comparison]) -> list[PreferenceJudgement]:
        """`judge` of every comparison, in order; by default all of them in flight together."""
        return list(await asyncio.gather(*(self.judge(c) for c in comparisons)))


@chz.chz
class PreferenceModelBuilder:
    """Config that builds a preference model (kept as plain data in run configs)."""

    def __call__(self) -> PreferenceModel:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")
