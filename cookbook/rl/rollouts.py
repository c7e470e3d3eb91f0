"""Rollouts: run episodes with a policy, concurrently, and score the groups once they are complete.

Every episode of a group runs as its own asyncio task, and every group of a batch too, so all
of a step's sample requests are in flight together and the server batches them into a few
large generation passes instead of one pass per answer. When a group's episodes all start from
the same observation (the usual case: several answers to one prompt), a sampling client samples
their first turns as one request of that many rows (`TokenCompleter.complete_group`). A batch is
scored once all its groups are sampled, through `EnvGroupBuilder.compute_batch_rewards`, in the
batch's order: a model-based judge scores every matchup of the step in one pass, and the same
batch always makes the same pass.

Reproducibility: given a `seed`, every sample's seed is derived from its place in the batch
(group index, then the group's shared first turn, or env index and turn), never from the order
in which requests happen to run, so a batch samples the same tokens whatever the scheduling (the
server's sampling seeds are per request, independent of what else shares a generation batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from cookbook.rl.completers import TokenCompleter
from cookbook.rl.seeds import derive_seed
from cookbook.rl.types import (
    Env,
    EnvGroupBuilder,
    Metrics,
    Observation,
    StopCondition,
    TokensWithLogprobs,
    Trajectory,
    TrajectoryGroup,
    Transition,
)

T = TypeVar("T")


async def gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Await all concurrently; if one fails, cancel the others and raise its error (fail fast, no orphans)."""
    tasks = [asyncio.ensure_future(aw) for aw in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def do_single_rollout(policy: TokenCompleter, env: Env, seed: int | None = None) -> Trajectory:
    """Run one episode to its end: observe, sample, step, until the env says it is done."""
    ob, stop_condition = await env.initial_observation()
    return await _continue_episode(policy, env, seed, ob, stop_condition)


async def _continue_episode(
    policy: TokenCompleter,
    env: Env,
    seed: int | None,
    ob: Observation,
    stop_condition: StopCondition,
    first_action: TokensWithLogprobs | None = None,
) -> Trajectory:
    """The episode from its initial observation `ob`; turn t samples with `derive_seed(seed, t)`, except
    a first turn already sampled (`first_action`)."""
    transitions: list[Transition] = []
    while True:
        if first_action is not None and not transitions:
            ac = first_action
        else:
            ac = await policy(ob, stop_condition, seed=derive_seed(seed, len(transitions)))
        result = await env.step(list(ac.tokens))
        transitions.append(
            Transition(
                ob=ob,
                ac=ac,
                reward=result.reward,
                episode_done=result.episode_done,
                metrics=result.metrics,
                logs=result.logs,
            )
        )
        ob, stop_condition = result.next_observation, result.next_stop_condition
        if result.episode_done:
            return Trajectory(transitions=transitions, final_ob=ob)


async def _make_envs(builder: EnvGroupBuilder) -> list[Env]:
    envs = list(await builder.make_envs())
    if not envs:
        raise ValueError(f"{type(builder).__name__}.make_envs() returned no environments")
    return envs


async def _run_episodes(envs: Sequence[Env], policy: TokenCompleter, seed: int | None) -> list[Trajectory]:
    """A group's episodes, concurrently. Episode i's turns are seeded from (`seed`, i, turn); when every
    episode starts from the same observation and the policy samples a group in one call, their first
    turns are one `complete_group(seed=seed)`."""
    starts = await gather_or_cancel([env.initial_observation() for env in envs])
    first_actions: Sequence[TokensWithLogprobs | None] = [None] * len(envs)
    ob, stop_condition = starts[0]
    shared_start = all(o == ob and list(s) == list(stop_condition) for o, s in starts)
    if policy.one_call_per_group and len(envs) > 1 and shared_start:
        first_actions = await policy.complete_group(ob, stop_condition, len(envs), seed=seed)
        if len(first_actions) != len(envs):
            raise ValueError(f"complete_group returned {len(first_actions)} samples for {len(envs)} episodes")
    return await gather_or_cancel(
        [
            _continue_episode(policy, env, derive_seed(seed, i), ob_i, stop_i, first)
            for i, (env, (ob_i, stop_i), first) in enumerate(zip(envs, starts, first_actions, strict=True))
        ]
    )


def _scored_group(
    builder: EnvGroupBuilder,
    trajectories_G: list[Trajectory],
    rewards_and_metrics_G: Sequence[tuple[float, Metrics]],
) -> TrajectoryGroup:
    if len(rewards_and_metrics_G) != len(trajectories_G):
        raise ValueError(
            f"{type(builder).__name__}.compute_group_rewards returned {len(rewards_and_metrics_G)} "
            f"(reward, metrics) pairs for {len(trajectories_G)} trajectories"
        )
    return TrajectoryGroup(
        trajectories_G=trajectories_G,
        final_rewards_G=[float(reward) for reward, _ in rewards_and_metrics_G],
        metrics_G=[dict(metrics) for _, metrics in rewards_and_metrics_G],
    )


async def do_group_rollout(
    builder: EnvGroupBuilder, policy: TokenCompleter, seed: int | None = None
) -> TrajectoryGroup:
    """Run a group's episodes concurrently, then score the group as a whole."""
    envs = await _make_envs(builder)
    try:
        trajectories_G = await _run_episodes(envs, policy, seed)
        rewards_and_metrics_G = await builder.compute_group_rewards(trajectories_G, envs)
    finally:
        await builder.cleanup()
    return _scored_group(builder, trajectories_G, rewards_and_metrics_G)


async def compute_batch_rewards(
    builders_P: Sequence[EnvGroupBuilder],
    trajectories_P: Sequence[list[Trajectory]],
    envs_P: Sequence[Sequence[Env]],
) -> list[list[tuple[float, Metrics]]]:
    """Every group's (reward, metrics) pairs, in order: the groups of each builder class are scored
    together by that class's `compute_batch_rewards` (the classes concurrently)."""
    by_class: dict[type[EnvGroupBuilder], list[int]] = {}
    for p, builder in enumerate(builders_P):
        by_class.setdefault(type(builder), []).append(p)
    scored = await gather_or_cancel(
        [
            cls.compute_batch_rewards(
                [builders_P[p] for p in indices],
                [trajectories_P[p] for p in indices],
                [envs_P[p] for p in indices],
            )
            for cls, indices in by_class.items()
        ]
    )
    out: list[list[tuple[float, Metrics]]] = [[] for _ in builders_P]
    for indices, rewards_P in zip(by_class.values(), scored, strict=True):
        if len(rewards_P) != len(indices):
            raise ValueError(
                f"compute_batch_rewards returned {len(rewards_P)} groups' rewards for {len(indices)}"
            )
        for p, rewards_G in zip(indices, rewards_P, strict=True):
            out[p] = list(rewards_G)
    return out


async def do_batch_rollouts(
    builders_P: Sequence[EnvGroupBuilder], policy: TokenCompleter, seed: int | None = None
) -> list[TrajectoryGroup]:
    """Roll out every group of a batch concurrently (one sample request per episode turn in flight),
    then score the batch; group p's episodes are seeded from (`seed`, p) as `do_group_rollout` would."""
    try:
        envs_P = await gather_or_cancel([_make_envs(builder) for builder in builders_P])
        trajectories_P = await gather_or_cancel(
            [_run_episodes(envs, policy, derive_seed(seed, p)) for p, envs in enumerate(envs_P)]
        )
        rewards_P = await compute_batch_rewards(builders_P, trajectories_P, envs_P)
    finally:
        await asyncio.gather(*(builder.cleanup() for builder in builders_P))
    return [
        _scored_group(builder, trajectories_G, rewards_G)
        for builder, trajectories_G, rewards_G in zip(builders_P, trajectories_P, rewards_P, strict=True)
    ]
