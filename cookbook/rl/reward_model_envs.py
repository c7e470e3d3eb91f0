"""RL on a scalar reward: each answer is scored on its own by a reward model, r = r_θ(prompt, answer).

The classic RLHF recipe (InstructGPT, TRL): a group of `group_size` one-step episodes per prompt,
each answer's reward the reward model's score (plus the format penalty when it did not end with
the stop sequence). The KL term of r_θ - λ·KL and the advantages are the RL loop's settings:
`kl_penalty_mode="sequence"` subtracts λ·KL per answer (the classic form), "token" shapes each
token; `advantage_mode="group"` centres on the group, "batch" normalises over the step.

The group's answers are scored in one request (the reward model gathers concurrent groups into
one forward too). Each answer logs `reward_model_score`; with an audit judge (the bundled data's
gold rule) every pair of the group is also compared by score and checked against it
(`judge_agreement`), as in pairwise RL.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import chz

from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder
from cookbook.preference.preference_model import build_preference_model
from cookbook.preference.reward_model import RewardModel
from cookbook.preference.types import Comparison, PreferenceModelBuilder
from cookbook.renderers import Message, Renderer
from cookbook.rl.judge_audit import JudgeAudit
from cookbook.rl.preference_envs import (
    DEFAULT_FORMAT_PENALTY,
    PreferenceEnv,
    load_policy_renderer,
    parse_answers,
)
from cookbook.rl.types import Env, EnvGroupBuilder, Metrics, RLDataset, RLDatasetBuilder, Trajectory

LOGGING_TAG = "reward_model"


@dataclass
class RewardModelGroupBuilder(EnvGroupBuilder):
    """`num_envs` answers to `convo_prefix`, each rewarded by `reward_model`'s score."""

    convo_prefix: list[Message]
    policy_renderer: Renderer
    reward_model: RewardModel
    num_envs: int
    format_penalty: float = DEFAULT_FORMAT_PENALTY
    audit: JudgeAudit | None = None

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")

    async def make_envs(self) -> Sequence[Env]:
        return [PreferenceEnv(self.convo_prefix, self.policy_renderer) for _ in range(self.num_envs)]

    async def compute_group_rewards(
        self, trajectories_G: list[Trajectory], envs: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        messages, valid = parse_answers(self.policy_renderer, trajectories_G)
        scores = await self.reward_model.score(self.convo_prefix, [[m] for m in messages])
        metrics_G: list[Metrics] = [
            {"reward_model_score": score, "format": float(ok)}
            for score, ok in zip(scores, valid, strict=True)
        ]
        if self.audit is not None and len(messages) > 1:
            pairs = list(itertools.combinations(range(len(messages)), 2))
            comparisons = [Comparison(self.convo_prefix, [messages[i]], [messages[j]]) for i, j in pairs]
            preferences = [math.tanh((scores[j] - scores[i]) / 2.0) for i, j in pairs]
            audits = await self.audit.episode_metrics(len(messages), pairs, comparisons, preferences)
            for metrics, audit in zip(metrics_G, audits, strict=True):
                metrics.update(audit)
        return [
            (score + (0.0 if ok else self.format_penalty), metrics)
            for score, ok, metrics in zip(scores, valid, metrics_G, strict=True)
        ]

    def logging_tags(self) -> list[str]:
        return [LOGGING_TAG]


class RewardModelRLDataset(RLDataset):
    """Batch i: the prompts [i * batch_size, (i + 1) * batch_size), one group each."""

    def __init__(
        self,
        prompts: Sequence[list[Message]],
        batch_size: int,
        group_size: int,
        policy_renderer: Renderer,
        reward_model: RewardModel,
        format_penalty: float = DEFAULT_FORMAT_PENALTY,
        audit: JudgeAudit | None = None,
    ):
        if batch_size < 1 or group_size < 1:
            raise ValueError(f"batch_size and group_size must be at least 1, got {batch_size}, {group_size}")
        if len(prompts) < batch_size:
            raise ValueError(f"{len(prompts)} prompts do not fill one batch of batch_size={batch_size}")
        self.prompts = [list(p) for p in prompts]
        self.batch_size = batch_size
        self.group_size = group_size
        self.policy_renderer = policy_renderer
        self.reward_model = reward_model
        self.format_penalty = format_penalty
        self.audit = audit

    def __len__(self) -> int:
        return len(self.prompts) // self.batch_size

    def get_batch(self, index: int) -> list[RewardModelGroupBuilder]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range: the dataset has {len(self)} batches")
        start = index * self.batch_size
        return [
            RewardModelGroupBuilder(
                convo_prefix=prompt,
                policy_renderer=self.policy_renderer,
                reward_model=self.reward_model,
                num_envs=self.group_size,
                format_penalty=self.format_penalty,
                audit=self.audit,
            )
            for prompt in self.prompts[start : start + self.batch_size]
        ]


@chz.chz
class RewardModelRLDatasetBuilder(RLDatasetBuilder):
    """RL on the prompts of a comparison data set's train split, rewarded by a scalar reward model.

    `reward_model_builder` builds the `RewardModel` (e.g. a `RewardModelBuilder` from a reward-model
    run's final state); the rest is as `PairwisePreferenceRLDatasetBuilder`.
    """

    comparison_builder: ComparisonDatasetBuilder
    batch_size: int
    policy_renderer_name: str
    policy_model_name: str
    group_size: int
    reward_model_builder: PreferenceModelBuilder
    format_penalty: float = DEFAULT_FORMAT_PENALTY
    shuffle_seed: int | None = None
    base_url: str | None = None
    audit_model_builder: PreferenceModelBuilder | None = None

    def prompts(self) -> list[list[Message]]:
        train, _ = self.comparison_builder.get_labeled_comparisons()
        prompts = [list(c.comparison.prompt_conversation) for c in train]
        if self.shuffle_seed is not None:
            random.Random(self.shuffle_seed).shuffle(prompts)
        return prompts

    async def __call__(self) -> tuple[RewardModelRLDataset, None]:
        prompts = await asyncio.to_thread(self.prompts)
        renderer = await asyncio.to_thread(
            load_policy_renderer, self.policy_model_name, self.policy_renderer_name, self.base_url
        )
        reward_model = await build_preference_model(self.reward_model_builder)
        if not isinstance(reward_model, RewardModel):
            raise TypeError(f"reward_model_builder built a {type(reward_model).__name__}, not a RewardModel")
        audit = None
        if self.audit_model_builder is not None:
            audit = JudgeAudit.of(await build_preference_model(self.audit_model_builder))
        dataset = RewardModelRLDataset(
            prompts, self.batch_size, self.group_size, renderer, reward_model, self.format_penalty, audit
        )
        return dataset, None
