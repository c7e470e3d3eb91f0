"""Rollout orchestration: concurrency, group scoring, multi-turn episodes, seeds.

The policy here is a scripted TokenCompleter, which isolates the orchestration from sampling;
the integration test runs the same rollouts against the real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest

from cookbook.client.types import ModelInput
from cookbook.rl.completers import TokenCompleter
from cookbook.rl.rollouts import derive_seed, do_batch_rollouts, do_group_rollout
from cookbook.rl.types import (
    Action,
    Env,
    EnvGroupBuilder,
    Metrics,
    StepResult,
    StopCondition,
    TokensWithLogprobs,
    Trajectory,
)


class ScriptedPolicy(TokenCompleter):
    """Answers [len(prompt), seed % 1000]; records calls and the most calls ever in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[tuple[list[int], StopCondition, int | None]] = []

    async def __call__(
        self, model_input: ModelInput, stop: StopCondition, *, seed: int | None = None
    ) -> TokensWithLogprobs:
        self.calls.append((model_input.to_ints(), stop, seed))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for _ in range(3):  # give every other episode the chance to start meanwhile
            await asyncio.sleep(0)
        self.in_flight -= 1
        tokens = [model_input.length, (seed or 0) % 1000]
        return TokensWithLogprobs(tokens=tokens, maybe_logprobs=[-1.0, -1.0], stop_reason="stop")


class CountdownEnv(Env):
    """`turns` turns; each observation is the whole history plus a [99] separator; reward 1 per turn."""

    def __init__(self, turns: int):
        self.turns = turns
        self.history = [1, 2]

    async def initial_observation(self) -> tuple[ModelInput, StopCondition]:
        return ModelInput.from_ints(self.history), ["\n\n"]

    async def step(self, action: Action) -> StepResult:
        self.turns -= 1
        self.history = [*self.history, *action, 99]
        return StepResult(
            reward=1.0,
            episode_done=self.turns == 0,
            next_observation=ModelInput.from_ints(self.history),
            next_stop_condition=["\n\n"],
            metrics={"turns_left": self.turns},
        )


class RankingBuilder(EnvGroupBuilder):
    """Group reward = the member's rank by its last action token; records what it was given."""

    def __init__(self, group_size: int, turns: int = 1, n_rewards: int | None = None):
        self.group_size, self.turns, self.n_rewards = group_size, turns, n_rewards
        self.seen: tuple[list[Trajectory], Sequence[Env]] | None = None
        self.made: list[Env] = []
        self.cleaned_up = False

    async def make_envs(self) -> Sequence[Env]:
        self.made = [CountdownEnv(self.turns) for _ in range(self.group_size)]
        return self.made

    async def compute_group_rewards(
        self, trajectories_G: list[Trajectory], envs: Sequence[Env]
    ) -> list[tuple[float, Metrics]]:
        self.seen = (trajectories_G, envs)
        last = [traj.transitions[-1].ac.tokens[-1] for traj in trajectories_G]
        ranks = [sorted(last).index(v) for v in last]
        return [(float(r), {"rank": r}) for r in ranks][: self.n_rewards]

    async def cleanup(self) -> None:
        self.cleaned_up = True


def test_every_episode_of_every_group_samples_concurrently() -> None:
    policy = ScriptedPolicy()
    builders = [RankingBuilder(4) for _ in range(3)]
    groups = asyncio.run(do_batch_rollouts(builders, policy, seed=7))
    assert len(groups) == 3 and all(len(g.trajectories_G) == 4 for g in groups)
    assert policy.max_in_flight == 12  # all 12 sample requests were in flight together


def test_group_rewards_see_the_whole_group_and_cleanup_runs() -> None:
    builder = RankingBuilder(3)
    group = asyncio.run(do_group_rollout(builder, ScriptedPolicy(), seed=1))
    assert builder.seen is not None
    trajectories, envs = builder.seen
    assert trajectories == group.trajectories_G and list(envs) == builder.made
    assert sorted(group.final_rewards_G) == [0.0, 1.0, 2.0]
    assert [m["rank"] for m in group.metrics_G] == group.final_rewards_G
    # Step reward 1 + group reward.
    assert group.get_total_rewards() == [1.0 + r for r in group.final_rewards_G]
    assert builder.cleaned_up


def test_wrong_number_of_group_rewards_is_an_error_after_cleanup() -> None:
    builder = RankingBuilder(3, n_rewards=2)
    with pytest.raises(ValueError, match="2 \\(reward, metrics\\) pairs for 3 trajectories"):
        asyncio.run(do_group_rollout(builder, ScriptedPolicy()))
    assert builder.cleaned_up


class BatchRankingBuilder(RankingBuilder):
    """Scores its batch's groups in one call of the class hook, after every group has been sampled."""

    batch_calls: ClassVar[list[int]] = []

    @classmethod
    async def compute_batch_rewards(
        cls,
        builders_P: Sequence[BatchRankingBuilder],
        trajectories_P: Sequence[list[Trajectory]],
        envs_P: Sequence[Sequence[Env]],
    ) -> list[list[tuple[float, Metrics]]]:
        cls.batch_calls.append(len(builders_P))
        return await super().compute_batch_rewards(builders_P, trajectories_P, envs_P)


def test_a_batch_is_scored_once_per_builder_class_in_batch_order_then_cleaned_up() -> None:
    BatchRankingBuilder.batch_calls = []
    builders = [BatchRankingBuilder(2), RankingBuilder(3), BatchRankingBuilder(2), RankingBuilder(1)]
    groups = asyncio.run(do_batch_rollouts(builders, ScriptedPolicy(), seed=11))
    assert BatchRankingBuilder.batch_calls == [2]
    assert [len(g.trajectories_G) for g in groups] == [2, 3, 2, 1]
    assert all(b.cleaned_up for b in builders)
    for builder, group in zip(builders, groups, strict=True):
        assert builder.seen is not None and builder.seen[0] == group.trajectories_G
        assert [m["rank"] for m in group.metrics_G] == group.final_rewards_G
    # Group p's episodes sample with the seeds a lone rollout of that group, seeded (11, p), uses.
    lone = asyncio.run(do_group_rollout(RankingBuilder(3), ScriptedPolicy(), seed=derive_seed(11, 1)))
    assert groups[1].trajectories_G == lone.trajectories_G


class GroupSamplingPolicy(ScriptedPolicy):
    """Samples a group's shared first turn in one call (as one request of n rows would)."""

    one_call_per_group = True

    def __init__(self) -> None:
        super().__init__()
        self.group_calls: list[tuple[list[int], int, int | None]] = []

    async def complete_group(
        self, model_input: ModelInput, stop: StopCondition, n: int, *, seed: int | None = None
    ) -> list[TokensWithLogprobs]:
        self.group_calls.append((model_input.to_ints(), n, seed))
        return [
            TokensWithLogprobs(
                tokens=[model_input.length, 500 + i], maybe_logprobs=[-1.0, -1.0], stop_reason="stop"
            )
            for i in range(n)
        ]


class TwoPromptsBuilder(RankingBuilder):
    """Its members start from different observations: they cannot share one sample request."""

    async def make_envs(self) -> Sequence[Env]:
        self.made = [CountdownEnv(self.turns) for _ in range(self.group_size)]
        self.made[0].history = [7]
        return self.made


def test_a_groups_shared_first_turn_is_one_call_and_later_turns_are_each_episodes_own() -> None:
    policy = GroupSamplingPolicy()
    groups = asyncio.run(
        do_batch_rollouts(
            [RankingBuilder(3, turns=2), TwoPromptsBuilder(2), RankingBuilder(1)], policy, seed=5
        )
    )
    assert policy.group_calls == [([1, 2], 3, derive_seed(5, 0))]
    first_turns = [t.transitions[0].ac.tokens for t in groups[0].trajectories_G]
    assert first_turns == [[2, 500], [2, 501], [2, 502]]
    # Second turns, the differing group and the group of one sample episode by episode.
    second_turn_seeds = [call[2] for call in policy.calls if len(call[0]) > 2 and call[0][:2] == [1, 2]]
    assert sorted(second_turn_seeds) == sorted(
        derive_seed(derive_seed(derive_seed(5, 0), i), 1) for i in range(3)
    )
    assert len(policy.calls) == 3 + 2 + 1


def test_multi_turn_episode_records_every_transition() -> None:
    policy = ScriptedPolicy()
    group = asyncio.run(do_group_rollout(RankingBuilder(1, turns=3), policy, seed=5))
    [traj] = group.trajectories_G
    assert [t.episode_done for t in traj.transitions] == [False, False, True]
    assert [t.metrics["turns_left"] for t in traj.transitions] == [2, 1, 0]
    # Each observation is the previous one plus the action and the separator.
    obs = [t.ob.to_ints() for t in traj.transitions]
    for prev, tr, nxt in zip(obs, traj.transitions, obs[1:], strict=False):
        assert nxt == [*prev, *tr.ac.tokens, 99]
    assert traj.final_ob.to_ints() == [*obs[-1], *traj.transitions[-1].ac.tokens, 99]
    assert [call[1] for call in policy.calls] == [["\n\n"]] * 3
    # Three turns, three different sampling seeds.
    assert len({call[2] for call in policy.calls}) == 3


def test_seeds_depend_on_position_not_on_scheduling() -> None:
    first, second = ScriptedPolicy(), ScriptedPolicy()
    asyncio.run(do_batch_rollouts([RankingBuilder(2), RankingBuilder(2)], first, seed=3))
    asyncio.run(do_batch_rollouts([RankingBuilder(2), RankingBuilder(2)], second, seed=3))
    seeds = [call[2] for call in first.calls]
    assert seeds == [call[2] for call in second.calls]
    assert len(set(seeds)) == 4  # every episode of the batch samples with its own seed
    unseeded = ScriptedPolicy()
    asyncio.run(do_batch_rollouts([RankingBuilder(2)], unseeded, seed=None))
    assert [call[2] for call in unseeded.calls] == [None, None]


def test_derive_seed() -> None:
    assert derive_seed(None, 1, 2) is None
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, 1, 2), derive_seed(0, 2, 1), derive_seed(1, 1, 2), derive_seed(0, 1)}) == 4
    assert 0 <= derive_seed(123, 4) < 2**32  # type: ignore[operator]
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(-1, 0)


class FailingEnv(CountdownEnv):
    async def step(self, action: Action) -> StepResult:
        raise RuntimeError("env failed")


class OneFailingBuilder(RankingBuilder):
    """Member 0 fails at once; the others would wait forever for a sampler that never answers."""

    async def make_envs(self) -> Sequence[Env]:
        self.made = [FailingEnv(1), *(CountdownEnv(1) for _ in range(self.group_size - 1))]
        return self.made


class StuckAfterFirstPolicy(ScriptedPolicy):
    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def __call__(
        self, model_input: ModelInput, stop: StopCondition, *, seed: int | None = None
    ) -> TokensWithLogprobs:
        if self.calls:
            self.calls.append((model_input.to_ints(), stop, seed))
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().__call__(model_input, stop, seed=seed)


def test_a_failing_episode_fails_the_rollout_and_cancels_its_siblings() -> None:
    policy = StuckAfterFirstPolicy()
    builder = OneFailingBuilder(3)
    with pytest.raises(RuntimeError, match="env failed"):
        asyncio.run(do_group_rollout(builder, policy))
    assert policy.cancelled == 2 and builder.cleaned_up
