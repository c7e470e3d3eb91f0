"""A tiny RL task for the tests: answer with tokens from the upper half of the vocabulary.

The reward of an answer is the fraction of its sampled tokens whose id is at least
`GOOD_TOKEN_START`. A random-init model samples nearly uniformly, so the reward starts near 0.5
and varies within every group: a dense signal that a few RL steps on the tiny model can raise.
Every action an env receives is recorded, so tests can check the trained tokens against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import chz

from cookbook.client.types import ModelInput
from cookbook.rl.types import (
    Action,
    Env,
    EnvGroupBuilder,
    Metrics,
    RLDataset,
    RLDatasetBuilder,
    StepResult,
    StopCondition,
    Trajectory,
)

GOOD_TOKEN_START = 256
TEST_PROMPT_OFFSET = 100
RECORDED_EPISODES: list[tuple[list[int], list[int]]] = []
"""(prompt tokens, action tokens) of every finished episode, in completion order."""
FAIL_AT_BATCH: list[int] = []
"""Batch indices whose envs raise (to interrupt a run as a crash would); module state, so the
run's config (and its log dir) stays the same when the test clears it and re-runs."""


class InjectedCrash(RuntimeError):
    """Raised by an env of a batch listed in FAIL_AT_BATCH."""


def good_fraction(tokens: Sequence[int]) -> float:
    return sum(t >= GOOD_TOKEN_START for t in tokens) / len(tokens) if tokens else 0.0


class UpperHalfEnv(Env):
    """One turn: the reward is the fraction of sampled tokens from the upper half of the vocabulary."""

    def __init__(self, prompt_tokens: list[int], batch_index: int):
        self.prompt_tokens = prompt_tokens
        self.batch_index = batch_index

    async def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        return ModelInput.from_ints(self.prompt_tokens), []

    async def step(self, action: Action) -> StepResult:
        if self.batch_index in FAIL_AT_BATCH:
            raise InjectedCrash(f"injected failure in batch {self.batch_index}")
        RECORDED_EPISODES.append((list(self.prompt_tokens), list(action)))
        return StepResult(
            reward=good_fraction(action),
            episode_done=True,
            next_observation=ModelInput.empty(),
            next_stop_condition=[],
            metrics={"good_fraction": good_fraction(action)},
        )


class UpperHalfGroupBuilder(EnvGroupBuilder):
    def __init__(
        self,
        prompt_tokens: list[int],
        group_size: int,
        batch_index: int,
        constant_reward: float | None = None,
    ):
        self.prompt_tokens = prompt_tokens
        self.group_size = group_size
        self.batch_index = batch_index
        self.constant_reward = constant_reward

    async def make_envs(self) -> Sequence[Env]:
        return [UpperHalfEnv(self.prompt_tokens, self.batch_index) for _ in range(self.group_size)]

    async def compute_group_rewards(
        self, trajectories_G: list[Trajectory], envs: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        if self.constant_reward is None:
            return [(0.0, {}) for _ in trajectories_G]
        # Cancel the step rewards: every member ends with the same total reward.
        return [
            (self.constant_reward - sum(t.reward for t in traj.transitions), {}) for traj in trajectories_G
        ]

    def logging_tags(self) -> list[str]:
        return ["upper_half"]


class UpperHalfDataset(RLDataset):
    def __init__(
        self,
        n_batches: int,
        groups_per_batch: int,
        group_size: int,
        constant_reward: float | None,
        prompt_offset: int = 0,
    ):
        self.n_batches = n_batches
        self.groups_per_batch = groups_per_batch
        self.group_size = group_size
        self.constant_reward = constant_reward
        self.prompt_offset = prompt_offset

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        if not 0 <= index < self.n_batches:
            raise IndexError(f"batch {index} of {self.n_batches}")
        return [
            UpperHalfGroupBuilder(
                [self.prompt_offset + 7 + p, 11 + index % 5, 13], self.group_size, index, self.constant_reward
            )
            for p in range(self.groups_per_batch)
        ]

    def __len__(self) -> int:
        return self.n_batches


@chz.chz
class UpperHalfDatasetBuilder(RLDatasetBuilder):
    n_batches: int = 8
    groups_per_batch: int = 8
    group_size: int = 4
    constant_reward: float | None = None
    n_test_groups: int = 0

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        train = UpperHalfDataset(self.n_batches, self.groups_per_batch, self.group_size, self.constant_reward)
        test = (
            UpperHalfDataset(1, self.n_test_groups, self.group_size, None, prompt_offset=TEST_PROMPT_OFFSET)
            if self.n_test_groups
            else None
        )
        return train, test
