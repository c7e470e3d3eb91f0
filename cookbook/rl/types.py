"""The vocabulary of RL: environments, what a rollout produces, and the datasets that feed the loop.

Everything is token-in/token-out: an environment hands the policy a `ModelInput` and receives
the exact token ids the sampler produced (never text that would be re-tokenized), so the tokens
that are trained are the tokens that were sampled, with the sampler's own logprobs beside them.

Rewards come from two places: `Env.step` (per-step rewards, e.g. a verifier's score) and
`EnvGroupBuilder.compute_group_rewards`, which sees a whole group of trajectories at once (what
pairwise preference rewards need: each completion is judged against its siblings). A batch's groups
are scored together through `compute_batch_rewards`, so a model-based judge can score all of a
step's matchups in one pass.

Axis suffixes on names follow DESIGN.md: `_G` members of one group, `_P` groups of a batch.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self, TypeAlias

import chz

from cookbook.client.types import ModelInput, StopReason

Action: TypeAlias = list[int]
"""The token ids the policy sampled for one turn (including any stop sequence it emitted)."""

Observation: TypeAlias = ModelInput
"""What the policy reads before acting: the full prompt of the turn."""

StopCondition: TypeAlias = list[str] | list[int]
"""What ends a turn: stop strings (matched on decoded text) or stop token ids."""

Logprobs: TypeAlias = list[float]
Metrics: TypeAlias = dict[str, float | int]
Logs: TypeAlias = dict[str, str | int | float]


@dataclass(frozen=True)
class TokensWithLogprobs:
    """A sampled turn exactly as the sampler returned it.

    `maybe_logprobs[i]` is the sampler's logprob of `tokens[i]` (of the temperature-scaled
    distribution); the importance-sampling losses need them, so RL refuses a turn without them.
    """

    tokens: list[int]
    maybe_logprobs: list[float] | None
    stop_reason: StopReason | None = None

    def __post_init__(self) -> None:
        if self.maybe_logprobs is not None and len(self.maybe_logprobs) != len(self.tokens):
            raise ValueError(f"{len(self.maybe_logprobs)} logprobs for {len(self.tokens)} sampled tokens")

    @property
    def logprobs(self) -> list[float]:
        if self.maybe_logprobs is None:
            raise ValueError("this sampled turn has no logprobs; RL training needs the sampler's logprobs")
        return self.maybe_logprobs


@dataclass
class StepResult:
    """What an environment answers to one action."""

    reward: float
    episode_done: bool
    next_observation: Observation
    next_stop_condition: StopCondition
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


@dataclass
class Transition:
    """One turn of an episode: what the policy saw, what it sampled, and what it got for it."""

    ob: Observation
    ac: TokensWithLogprobs
    reward: float
    episode_done: bool
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)


@dataclass
class Trajectory:
    """A whole episode. `final_ob` is the observation after the last action (unused by training)."""

    transitions: list[Transition]
    final_ob: Observation


@dataclass
class TrajectoryGroup:
    """The episodes of one group (e.g. several answers to one prompt) and their group-level rewards.

    `final_rewards_G[i]` and `metrics_G[i]` come from `compute_group_rewards`; a trajectory's
    total reward is the sum of its step rewards plus its group reward.
    """

    trajectories_G: list[Trajectory]
    final_rewards_G: list[float]
    metrics_G: list[Metrics]

    def __post_init__(self) -> None:
        n = len(self.trajectories_G)
        if len(self.final_rewards_G) != n or len(self.metrics_G) != n:
            raise ValueError(
                f"a group of {n} trajectories needs {n} final rewards and {n} metric dicts, "
                f"got {len(self.final_rewards_G)} and {len(self.metrics_G)}"
            )

    def get_total_rewards(self) -> list[float]:
        """Per trajectory: the sum of its step rewards plus its group reward."""
        return [
            sum(t.reward for t in traj.transitions) + final
            for traj, final in zip(self.trajectories_G, self.final_rewards_G, strict=True)
        ]


class Env(ABC):
    """One episode of an environment. Single use: a fresh Env is made for every episode."""

    @abstractmethod
    async def initial_observation(self) -> tuple[Observation, StopCondition]:
        """The first prompt and what ends the first turn."""

    @abstractmethod
    async def step(self, action: Action) -> StepResult:
        """React to the sampled tokens of one turn."""


class EnvGroupBuilder(ABC):
    """Makes the envs of one group and scores the group once all its episodes are done.

    Builders are what datasets hand out; keep them small and picklable (plain data, no clients
    that cannot be pickled), so that rollouts could move to worker processes.
    """

    @abstractmethod
    async def make_envs(self) -> Sequence[Env]:
        """The group's environments (typically the same prompt several times)."""

    async def compute_group_rewards(
        self, trajectories_G: list[Trajectory], envs: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        """A (reward, metrics) pair per trajectory, judged with the whole group in view (default: none)."""
        return [(0.0, {}) for _ in trajectories_G]

    @classmethod
    async def compute_batch_rewards(
        cls,
        builders_P: Sequence[Self],
        trajectories_P: Sequence[list[Trajectory]],
        envs_P: Sequence[Sequence[Env]],
    ) -> list[list[tuple[float, Metrics]]]:
        """`compute_group_rewards` of several groups of this class at once, in order (a judge may score
        them in one pass); by default each group's on its own, all in flight together."""
        return list(
            await asyncio.gather(
                *(
                    builder.compute_group_rewards(trajectories_G, envs)
                    for builder, trajectories_G, envs in zip(builders_P, trajectories_P, envs_P, strict=True)
                )
            )
        )

    async def cleanup(self) -> None:  # noqa: B027 - an optional hook, deliberately empty
        """Release what `make_envs` acquired; called once after the group (or its batch) is scored or failed."""

    def logging_tags(self) -> list[str]:
        """Tags under which this group's metrics are also reported (`env/<tag>/...`)."""
        return []


class RLDataset(ABC):
    """Batches of env group builders; batch `i` is step `i` of training."""

    @abstractmethod
    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        """The group builders of batch `index` (0 <= index < len(self)), the same every call."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of batches."""


@chz.chz
class RLDatasetBuilder:
    """Config that builds the (train, test | None) RL datasets; a test set is evaluated by rollouts."""

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")
