"""Pairwise self-play RL: a group of answers to one prompt, rewarded by a judge comparing them.

Each group holds `group_size` one-step episodes on the same prompt. Once all of them are
sampled, a preference model judges every matchup of the group's tournament (see
`cookbook.rl.tournament`) and each answer's reward is its win fraction over its matchups, in
[0, 1]: with a soft judge, the probability that it wins, averaged. An answer that did not end
with the chat format's stop sequence (cut off by max_tokens, or malformed) gets a format
penalty on top (default -1), so it is worse than any clean answer whatever the judge says.

A batch's groups are judged together (`compute_batch_rewards`): every matchup of every group
that shares a judge goes to it in one `preferences` call, in the batch's order, which a
model-based judge scores in one forward pass; a group scored on its own makes one call too.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import chz

from cookbook.client.types import ModelInput
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder
from cookbook.preference.preference_model import build_preference_model
from cookbook.preference.types import Comparison, PreferenceModel, PreferenceModelBuilder
from cookbook.renderers import Message, Renderer, get_renderer
from cookbook.rl.judge_audit import JudgeAudit
from cookbook.rl.tournament import TournamentPattern, get_pairs_chunked, win_fractions
from cookbook.rl.types import (
    Action,
    Env,
    EnvGroupBuilder,
    Metrics,
    Observation,
    RLDataset,
    RLDatasetBuilder,
    StepResult,
    StopCondition,
    Trajectory,
)
from cookbook.tokenizer_utils import find_tokenizer, get_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_FORMAT_PENALTY = -1.0
DEFAULT_MATCHUP_GROUP_SIZE = 4
LOGGING_TAG = "pair_pref"

GroupT = TypeVar("GroupT", bound=EnvGroupBuilder)

__all__ = [
    "PairwisePreferenceDataset",
    "PairwisePreferenceGroupBuilder",
    "PairwisePreferenceRLDatasetBuilder",
    "PreferenceEnv",
    "PromptGroupDataset",
    "PromptRLDatasetBuilder",
    "TournamentPattern",
    "get_pairs_chunked",
]


class PreferenceEnv(Env):
    """One answer to a conversation prefix; the reward comes later, from the group's tournament."""

    def __init__(self, convo_prefix: Sequence[Message], policy_renderer: Renderer):
        self.convo_prefix = list(convo_prefix)
        self.policy_renderer = policy_renderer

    @property
    def stop_condition(self) -> StopCondition:
        return self.policy_renderer.get_stop_sequences()

    async def initial_observation(self) -> tuple[Observation, StopCondition]:
        return self.policy_renderer.build_generation_prompt(self.convo_prefix), self.stop_condition

    async def step(self, action: Action) -> StepResult:
        return StepResult(
            reward=0.0,
            episode_done=True,
            next_observation=ModelInput.empty(),
            next_stop_condition=self.stop_condition,
        )


def parse_answers(
    policy_renderer: Renderer, trajectories_G: Sequence[Trajectory]
) -> tuple[list[Message], list[bool]]:
    """Each one-turn trajectory's answer message, and whether it ended with the stop sequence."""
    messages, valid = [], []
    for g, trajectory in enumerate(trajectories_G):
        if len(trajectory.transitions) != 1:
            raise ValueError(
                f"trajectory {g} has {len(trajectory.transitions)} turns; a preference env has one"
            )
        message, termination = policy_renderer.parse_response(trajectory.transitions[0].ac.tokens)
        messages.append(message)
        valid.append(termination.is_stop_sequence)
    return messages, valid


async def add_audit_metrics(
    audit: JudgeAudit,
    metrics_G: list[Metrics],
    pairs: Sequence[tuple[int, int]],
    comparisons: Sequence[Comparison],
    preferences: Sequence[float],
) -> None:
    """Add each answer's judge_agreement metrics: how often `audit` agreed with the group's preferences."""
    audits = await audit.episode_metrics(len(metrics_G), pairs, comparisons, preferences)
    for metrics, answer_audit in zip(metrics_G, audits, strict=True):
        metrics.update(answer_audit)


def with_format_penalty(
    rewards: Sequence[float], valid: Sequence[bool], metrics_G: list[Metrics], format_penalty: float
) -> list[tuple[float, Metrics]]:
    """Each answer's (reward, metrics), `format_penalty` added to the answers that did not end cleanly."""
    return [
        (reward + (0.0 if ok else format_penalty), metrics)
        for reward, ok, metrics in zip(rewards, valid, metrics_G, strict=True)
    ]


@dataclass(frozen=True)
class _Matchups:
    """A group's answers (whether each ended cleanly) and its tournament's comparisons."""

    valid: list[bool]
    pairs: list[tuple[int, int]]
    comparisons: list[Comparison]


@dataclass
class PairwisePreferenceGroupBuilder(EnvGroupBuilder):
    """`num_envs` answers to `convo_prefix`, rewarded by `preference_model` through a tournament."""

    convo_prefix: list[Message]
    policy_renderer: Renderer
    tournament_pattern: TournamentPattern
    preference_model: PreferenceModel
    num_envs: int
    matchup_group_size: int = DEFAULT_MATCHUP_GROUP_SIZE
    format_penalty: float = DEFAULT_FORMAT_PENALTY
    audit: JudgeAudit | None = None  # adds each answer's judge_agreement metrics

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")
        if self.matchup_group_size < 2:
            raise ValueError(
                f"matchup_group_size must be at least 2 (a matchup needs two players), "
                f"got {self.matchup_group_size}"
            )
        self.tournament_pattern = TournamentPattern(self.tournament_pattern)

    async def make_envs(self) -> Sequence[Env]:
        return [PreferenceEnv(self.convo_prefix, self.policy_renderer) for _ in range(self.num_envs)]

    def parse_answers(self, trajectories_G: Sequence[Trajectory]) -> tuple[list[Message], list[bool]]:
        """Each trajectory's answer message, and whether it ended with the stop sequence."""
        return parse_answers(self.policy_renderer, trajectories_G)

    def matchups(self, trajectories_G: Sequence[Trajectory]) -> _Matchups:
        """The group's answers and the comparisons its tournament asks the judge about."""
        messages, valid = self.parse_answers(trajectories_G)
        pairs = get_pairs_chunked(len(messages), self.tournament_pattern, self.matchup_group_size)
        comparisons = [Comparison(self.convo_prefix, [messages[i]], [messages[j]]) for i, j in pairs]
        return _Matchups(valid, pairs, comparisons)

    async def rewards(self, matchups: _Matchups, preferences: Sequence[float]) -> list[tuple[float, Metrics]]:
        """Each answer's (reward, metrics) from the judge's `preferences` of the group's matchups."""
        preferences = [float(p) for p in preferences]
        fractions, _ = win_fractions(len(matchups.valid), matchups.pairs, preferences)
        metrics_G: list[Metrics] = [
            {"win_fraction": fraction, "format": float(ok)}
            for fraction, ok in zip(fractions, matchups.valid, strict=True)
        ]
        if self.audit is not None:
            await add_audit_metrics(self.audit, metrics_G, matchups.pairs, matchups.comparisons, preferences)
        return with_format_penalty(fractions, matchups.valid, metrics_G, self.format_penalty)

    async def compute_group_rewards(
        self, trajectories_G: list[Trajectory], envs: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        matchups = self.matchups(trajectories_G)
        return await self.rewards(matchups, await self.preference_model.preferences(matchups.comparisons))

    @classmethod
    async def compute_batch_rewards(
        cls,
        builders_P: Sequence[PairwisePreferenceGroupBuilder],
        trajectories_P: Sequence[list[Trajectory]],
        envs_P: Sequence[Sequence[Env]],
    ) -> list[list[tuple[float, Metrics]]]:
        """One `preferences` call per judge over all its groups' matchups, in the batch's order."""
        matchups_P = [b.matchups(t) for b, t in zip(builders_P, trajectories_P, strict=True)]
        by_judge: dict[int, list[int]] = {}
        for p, builder in enumerate(builders_P):
            by_judge.setdefault(id(builder.preference_model), []).append(p)
        judged = await asyncio.gather(
            *(
                builders_P[indices[0]].preference_model.preferences(
                    [c for p in indices for c in matchups_P[p].comparisons]
                )
                for indices in by_judge.values()
            )
        )
        preferences_P: list[list[float]] = [[] for _ in builders_P]
        for indices, preferences in zip(by_judge.values(), judged, strict=True):
            start = 0
            for p in indices:
                end = start + len(matchups_P[p].comparisons)
                preferences_P[p] = list(preferences[start:end])
                start = end
            if start != len(preferences):
                raise ValueError(f"the judge returned {len(preferences)} preferences for {start} comparisons")
        return list(
            await asyncio.gather(
                *(
                    builder.rewards(matchups, preferences)
                    for builder, matchups, preferences in zip(
                        builders_P, matchups_P, preferences_P, strict=True
                    )
                )
            )
        )

    def logging_tags(self) -> list[str]:
        return [LOGGING_TAG]


class PromptGroupDataset(RLDataset, Generic[GroupT]):
    """Batch i: the prompts [i * batch_size, (i + 1) * batch_size), one group of `group_size` answers each."""

    def __init__(
        self,
        prompts: Sequence[list[Message]],
        batch_size: int,
        group_size: int,
        policy_renderer: Renderer,
        format_penalty: float = DEFAULT_FORMAT_PENALTY,
        audit: JudgeAudit | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {group_size}")
        if len(prompts) < batch_size:
            raise ValueError(f"{len(prompts)} prompts do not fill one batch of batch_size={batch_size}")
        self.prompts = [list(p) for p in prompts]
        self.batch_size = batch_size
        self.group_size = group_size
        self.policy_renderer = policy_renderer
        self.format_penalty = format_penalty
        self.audit = audit

    def __len__(self) -> int:
        return len(self.prompts) // self.batch_size

    def get_batch(self, index: int) -> list[GroupT]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range: the dataset has {len(self)} batches")
        start = index * self.batch_size
        return [self.group_for(prompt) for prompt in self.prompts[start : start + self.batch_size]]

    def group_fields(self, prompt: list[Message]) -> dict[str, Any]:
        """The fields every kind of group builder takes, for the group answering `prompt`."""
        return {
            "convo_prefix": prompt,
            "policy_renderer": self.policy_renderer,
            "num_envs": self.group_size,
            "format_penalty": self.format_penalty,
            "audit": self.audit,
        }

    @abstractmethod
    def group_for(self, prompt: list[Message]) -> GroupT:
        """The group builder of `group_size` answers to `prompt`."""


class PairwisePreferenceDataset(PromptGroupDataset[PairwisePreferenceGroupBuilder]):
    """Groups rewarded by `preference_model` through a tournament."""

    def __init__(
        self,
        prompts: Sequence[list[Message]],
        batch_size: int,
        group_size: int,
        policy_renderer: Renderer,
        preference_model: PreferenceModel,
        tournament_pattern: TournamentPattern = TournamentPattern.ALL_PAIRS_BOTH_WAYS,
        matchup_group_size: int = DEFAULT_MATCHUP_GROUP_SIZE,
        format_penalty: float = DEFAULT_FORMAT_PENALTY,
        audit: JudgeAudit | None = None,
    ):
        super().__init__(prompts, batch_size, group_size, policy_renderer, format_penalty, audit)
        self.preference_model = preference_model
        self.tournament_pattern = TournamentPattern(tournament_pattern)
        self.matchup_group_size = matchup_group_size

    def group_for(self, prompt: list[Message]) -> PairwisePreferenceGroupBuilder:
        return PairwisePreferenceGroupBuilder(
            tournament_pattern=self.tournament_pattern,
            preference_model=self.preference_model,
            matchup_group_size=self.matchup_group_size,
            **self.group_fields(prompt),
        )


def load_policy_renderer(model_name: str, renderer_name: str, base_url: str | None = None) -> Renderer:
    """The policy's chat renderer; the tokenizer is found locally, else fetched from the server."""
    tokenizer = find_tokenizer(model_name)
    if tokenizer is None:
        from cookbook.client.connection import connect

        with connect(base_url) as service:
            tokenizer = get_tokenizer(model_name, service)
    return get_renderer(renderer_name, tokenizer)


@chz.chz
class PromptRLDatasetBuilder(RLDatasetBuilder):
    """RL on the prompts of a comparison data set's train split (the fields pairwise and scalar RL share).

    `batch_size` counts prompts (groups) per step, `group_size` answers per prompt. With
    `shuffle_seed` the prompts are reordered by it (None keeps the data set's order). With
    `audit_model_builder` (e.g. the bundled data's gold rule) the group's answers are compared by it
    too, and the rollouts report how often the reward agreed (`env/all/judge_agreement`).
    """

    comparison_builder: ComparisonDatasetBuilder
    batch_size: int
    policy_renderer_name: str
    policy_model_name: str
    group_size: int
    format_penalty: float = DEFAULT_FORMAT_PENALTY
    shuffle_seed: int | None = None
    base_url: str | None = None
    audit_model_builder: PreferenceModelBuilder | None = None

    def prompts(self) -> list[list[Message]]:
        """The prompt conversations of the train comparisons, in training order."""
        train, _ = self.comparison_builder.get_labeled_comparisons()
        prompts = [list(c.comparison.prompt_conversation) for c in train]
        if self.shuffle_seed is not None:
            random.Random(self.shuffle_seed).shuffle(prompts)
        return prompts

    async def prompts_and_renderer(self) -> tuple[list[list[Message]], Renderer]:
        """The training prompts and the policy's renderer, loaded off the event loop."""
        prompts = await asyncio.to_thread(self.prompts)
        renderer = await asyncio.to_thread(
            load_policy_renderer, self.policy_model_name, self.policy_renderer_name, self.base_url
        )
        return prompts, renderer

    async def build_audit(self) -> JudgeAudit | None:
        """The audit judge of `audit_model_builder`, if one is set."""
        if self.audit_model_builder is None:
            return None
        return JudgeAudit.of(await build_preference_model(self.audit_model_builder))


@chz.chz
class PairwisePreferenceRLDatasetBuilder(PromptRLDatasetBuilder):
    """Self-play RL judged by a preference model through a tournament of each group's answers."""

    preference_model_builder: PreferenceModelBuilder
    tournament_pattern: TournamentPattern = TournamentPattern.ALL_PAIRS_BOTH_WAYS
    matchup_group_size: int = DEFAULT_MATCHUP_GROUP_SIZE

    @chz.validate
    def _check(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {self.group_size}")
        if self.matchup_group_size < 2:
            raise ValueError(f"matchup_group_size must be at least 2, got {self.matchup_group_size}")
        TournamentPattern(self.tournament_pattern)  # a ValueError naming the bad value

    async def __call__(self) -> tuple[PairwisePreferenceDataset, None]:
        prompts, renderer = await self.prompts_and_renderer()
        preference_model = await build_preference_model(self.preference_model_builder)
        audit = await self.build_audit()
        dataset = PairwisePreferenceDataset(
            prompts,
            self.batch_size,
            self.group_size,
            renderer,
            preference_model,
            self.tournament_pattern,
            self.matchup_group_size,
            self.format_penalty,
            audit,
        )
        return dataset, None
