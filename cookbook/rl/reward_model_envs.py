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

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import chz

from cookbook.preference.preference_model import build_preference_model
from cookbook.preference.reward_model import RewardModel
from cookbook.preference.types import Comparison, PreferenceModelBuilder
from cookbook.renderers import Message, Renderer
from cookbook.rl.judge_audit import JudgeAudit
from cookbook.rl.preference_envs import (
    DEFAULT_FORMAT_PENALTY,
    PreferenceEnv,
    PromptGroupDataset,
    PromptRLDatasetBuilder,
    add_audit_metrics,
    parse_answers,
    with_format_penalty,
)
from cookbook.rl.types import Env, EnvGroupBuilder, Metrics, Trajectory

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
            await add_audit_metrics(self.audit, metrics_G, pairs, comparisons, preferences)
        return with_format_penalty(scores, valid, metrics_G, self.format_penalty)

    def logging_tags(self) -> list[str]:
        return [LOGGING_TAG]


class RewardModelRLDataset(PromptGroupDataset[RewardModelGroupBuilder]):
    """Groups rewarded by `reward_model`'s score of each answer."""

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
        super().__init__(prompts, batch_size, group_size, policy_renderer, format_penalty, audit)
        self.reward_model = reward_model

    def group_for(self, prompt: list[Message]) -> RewardModelGroupBuilder:
        return RewardModelGroupBuilder(reward_model=self.reward_model, **self.group_fields(prompt))


@chz.chz
class RewardModelRLDatasetBuilder(PromptRLDatasetBuilder):
    """RL on the prompts of a comparison data set's train split, rewarded by a scalar reward model.

    `reward_model_builder` builds the `RewardModel` (e.g. a `RewardModelBuilder` from a reward-model
    run's final state); the rest is `PromptRLDatasetBuilder`'s.
    """

    reward_model_builder: PreferenceModelBuilder

    async def __call__(self) -> tuple[RewardModelRLDataset, None]:
        prompts, renderer = await self.prompts_and_renderer()
        reward_model = await build_preference_model(self.reward_model_builder)
        if not isinstance(reward_model, RewardModel):
            raise TypeError(f"reward_model_builder built a {type(reward_model).__name__}, not a RewardModel")
        audit = await self.build_audit()
        dataset = RewardModelRLDataset(
            prompts, self.batch_size, self.group_size, renderer, reward_model, self.format_penalty, audit
        )
        return dataset, None
