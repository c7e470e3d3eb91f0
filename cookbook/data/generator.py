"""Deterministic generation of the bundled chat and comparison splits.

Chat rows follow the HuggingFaceH4/no_robots schema (prompt, prompt_id, messages, category) and
teach the policy the tasks in mixed styles, mostly correct. Comparison rows follow the
Anthropic/hh-rlhf schema (chosen, rejected transcripts) and are labelled by the gold judge.

Comparison pairs are drawn by *kind* so that every attribute the rule cares about appears on
its own, which is what a 0.6M-parameter preference model needs to learn each of them within a
few hundred steps (the measurements behind the defaults are in README.md):
- "correctness": same openers, correct vs incorrect (wrong answers are slips the answer itself
  shows: a 2-layer judge learns those, while wrong facts stayed at chance in the prototype);
- "style": same content, polite > plain > rude (mostly polite vs plain, the subtle one);
- "stacked": a stack of polite openers loses to one opener or none, so RL cannot win by
  stacking "Sure! Sure!" (the reward hack the feasibility prototype ran into);
- "truncation", and "mixed" (everything random).
"garbled" and "offtopic" pairs are available but off by default: they cost the judge accuracy
on everything else without making RL at the default KL any more robust.
Every random draw comes from a `random.Random` seeded by (seed, dataset, split), so the same
seed gives the same rows, byte for byte.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal, TypeVar

from cookbook.data import facts, gold_judge
from cookbook.data.answers import STYLES, AnswerSpec, ContentVariant, Style, write_answer
from cookbook.data.hh_format import render_transcript
from cookbook.data.tasks import TaskFamily, TaskInstance, task_families

PairKind = Literal["correctness", "style", "truncation", "stacked", "garbled", "offtopic", "mixed"]
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes and mixtures of the bundled data (the defaults are the tuned design)."""

    chat_train: int = 3000
    chat_test: int = 300
    comparison_train: int = 4000
    comparison_test: int = 400
    max_operand: int = 4
    max_repeat: int = 3
    slip_frac: float = 1.0
    greeting_frac: float = 0.15
    system_frac: float = 0.10
    chat_styles: tuple[tuple[Style, float], ...] = (("plain", 0.45), ("polite", 0.35), ("rude", 0.20))
    chat_contents: tuple[tuple[ContentVariant, float], ...] = (
        ("correct", 0.88),
        ("incorrect", 0.07),
        ("truncated", 0.05),
    )
    pair_kinds: tuple[tuple[PairKind, float], ...] = (
        ("correctness", 0.45),
        ("style", 0.25),
        ("truncation", 0.08),
        ("stacked", 0.10),
        ("garbled", 0.0),
        ("offtopic", 0.0),
        ("mixed", 0.12),
    )
    pair_styles: tuple[tuple[Style, float], ...] = (("plain", 0.45), ("polite", 0.25), ("rude", 0.30))

    def split_size(self, dataset: str, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return getattr(self, f"{dataset}_{split}")


Spec = tuple[Style, ContentVariant]


_T = TypeVar("_T")


def _pick(rng: random.Random, table: tuple[tuple[_T, float], ...]) -> _T:
    values, weights = zip(*table, strict=True)
    return rng.choices(values, weights)[0]


class _Draw:
    """Random draws for one (seed, dataset, split) stream."""

    def __init__(self, config: GeneratorConfig, seed: int, dataset: str, split: str):
        self.config = config
        self.rng = random.Random(f"cookbook-data/{seed}/{dataset}/{split}")
        self.families: tuple[TaskFamily, ...] = task_families(config.max_operand, config.max_repeat)

    def task(self) -> TaskInstance:
        return self.rng.choice(self.families).sample(self.rng)

    def prefix_turns(self) -> list[dict[str, str]]:
        """An optional greeting exchange before the question."""
        if self.rng.random() < self.config.greeting_frac:
            return [
                {"role": "user", "content": self.rng.choice(facts.GREETINGS)},
                {"role": "assistant", "content": facts.GREETING_REPLY},
            ]
        return []

    def answer(self, instance: TaskInstance, spec: Spec) -> str:
        return write_answer(AnswerSpec(*spec), instance, self.families, self.rng, self.config.slip_frac)

    def pair_specs(self, kind: PairKind) -> tuple[Spec, Spec]:
        """(style, content) of the two answers of a comparison of this kind."""
        rng, styles = self.rng, self.config.pair_styles
        if kind == "correctness":
            style = _pick(rng, styles)
            return (style, "correct"), (style, "incorrect")
        if kind == "style":
            # Any content, so that "polite beats plain beats rude" is learned apart from whether
            # the polite answer is also perfect (and most chosen answers leave room to improve).
            first, second = rng.choice(_STYLE_PAIRS)
            content = rng.choice(_STYLE_PAIR_CONTENTS)
            return (first, content), (second, content)
        if kind == "truncation":
            style = _pick(rng, styles)
            return (style, rng.choice(_TRUNCATION_RIVALS)), (style, "truncated")
        if kind == "stacked":
            content = rng.choice(_STYLE_PAIR_CONTENTS)
            return ("stacked", content), (rng.choice(_STACKED_RIVALS), content)
        if kind == "garbled":
            style = _pick(rng, styles)
            return (style, rng.choice(_GARBLE_RIVALS)), (style, "garbled")
        if kind == "offtopic":
            return (_pick(rng, styles), "offtopic"), (_pick(rng, styles), rng.choice(_ON_TOPIC))
        if kind == "mixed":
            return ((rng.choice(STYLES), rng.choice(_ON_TOPIC)), (rng.choice(STYLES), rng.choice(_ON_TOPIC)))
        raise ValueError(f"unknown pair kind {kind!r}")


_ON_TOPIC: tuple[ContentVariant, ...] = ("correct", "incorrect", "truncated", "garbled")
_TRUNCATION_RIVALS: tuple[ContentVariant, ...] = ("correct", "correct", "incorrect")
_GARBLE_RIVALS: tuple[ContentVariant, ...] = ("correct", "correct", "correct", "incorrect")
_STACKED_RIVALS: tuple[Style, ...] = ("plain", "polite")
# Polite-vs-plain is the subtle one (the same opener words also appear in stacks), so it is drawn most.
_STYLE_PAIRS: tuple[tuple[Style, Style], ...] = (
    ("polite", "plain"),
    ("polite", "plain"),
    ("polite", "plain"),
    ("polite", "rude"),
    ("plain", "rude"),
)
_STYLE_PAIR_CONTENTS: tuple[ContentVariant, ...] = ("correct", "correct", "incorrect", "truncated")


def _prompt_id(split: str, index: int, prompt: str) -> str:
    return hashlib.sha256(f"{split}/{index}/{prompt}".encode()).hexdigest()


def chat_rows(split: str, seed: int = 0, config: GeneratorConfig | None = None) -> list[dict]:
    """no_robots-style rows: one task per conversation, sometimes after a greeting or a system turn."""
    config = config or GeneratorConfig()
    draw = _Draw(config, seed, "chat", split)
    rows = []
    for index in range(config.split_size("chat", split)):
        messages: list[dict[str, str]] = []
        if draw.rng.random() < config.system_frac:
            messages.append({"role": "system", "content": draw.rng.choice(facts.SYSTEM_PROMPTS)})
        messages += draw.prefix_turns()
        instance = draw.task()
        answer = draw.answer(
            instance, (_pick(draw.rng, config.chat_styles), _pick(draw.rng, config.chat_contents))
        )
        messages += [{"role": "user", "content": instance.question}, {"role": "assistant", "content": answer}]
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": _prompt_id(split, index, prompt),
                "messages": messages,
                "category": instance.kind,
            }
        )
    return rows


def comparison_rows(split: str, seed: int = 0, config: GeneratorConfig | None = None) -> list[dict]:
    """hh-rlhf-style rows; chosen is the answer the gold judge scores higher (ties are redrawn)."""
    config = config or GeneratorConfig()
    draw = _Draw(config, seed, "comparison", split)
    rows = []
    for _ in range(config.split_size("comparison", split)):
        prompt = draw.prefix_turns()
        instance = draw.task()
        prompt.append({"role": "user", "content": instance.question})
        kind = _pick(draw.rng, config.pair_kinds)
        while True:
            spec_a, spec_b = draw.pair_specs(kind)
            a, b = draw.answer(instance, spec_a), draw.answer(instance, spec_b)
            score_a = gold_judge.assess_for_task(instance, a).score
            score_b = gold_judge.assess_for_task(instance, b).score
            if score_a != score_b:
                break
        chosen, rejected = (a, b) if score_a > score_b else (b, a)
        rows.append(
            {
                "chosen": render_transcript([*prompt, {"role": "assistant", "content": chosen}]),
                "rejected": render_transcript([*prompt, {"role": "assistant", "content": rejected}]),
            }
        )
    return rows
