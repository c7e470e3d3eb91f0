"""Hand-made trajectories for the unit tests: exact tokens, logprobs and rewards chosen by the test."""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.client.types import ModelInput
from cookbook.rl.types import Metrics, TokensWithLogprobs, Trajectory, TrajectoryGroup, Transition


def turn(
    ob: Sequence[int],
    ac: Sequence[int],
    logprobs: Sequence[float] | None = None,
    reward: float = 0.0,
    metrics: Metrics | None = None,
    stop_reason: str = "stop",
) -> Transition:
    """One transition; logprobs default to -0.1, -0.2, ... so each action token's value is recognisable."""
    lps = [-(i + 1) / 10 for i in range(len(ac))] if logprobs is None else list(logprobs)
    return Transition(
        ob=ModelInput.from_ints(list(ob)),
        ac=TokensWithLogprobs(tokens=list(ac), maybe_logprobs=lps, stop_reason=stop_reason),  # type: ignore[arg-type]
        reward=reward,
        episode_done=False,
        metrics=metrics or {},
    )


def trajectory(*transitions: Transition) -> Trajectory:
    transitions[-1].episode_done = True
    return Trajectory(transitions=list(transitions), final_ob=ModelInput.empty())


def group(
    rewards_G: Sequence[float],
    final_rewards_G: Sequence[float] | None = None,
    ac_lengths_G: Sequence[int] | None = None,
    metrics_G: Sequence[Metrics] | None = None,
) -> TrajectoryGroup:
    """A group of single-turn trajectories with prompt [1, 2, 3] and the given step rewards."""
    n = len(rewards_G)
    lengths = ac_lengths_G or [2] * n
    trajs = [
        trajectory(turn([1, 2, 3], list(range(10, 10 + lengths[g])), reward=rewards_G[g])) for g in range(n)
    ]
    return TrajectoryGroup(
        trajectories_G=trajs,
        final_rewards_G=list(final_rewards_G or [0.0] * n),
        metrics_G=list(metrics_G or [{} for _ in range(n)]),
    )
