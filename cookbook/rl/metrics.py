"""RL diagnostics: what the rollouts got, how the groups split, and how far the trainer is from the sampler.

Names follow Tinker's cookbook so curves compare across tools:
- `env/all/...`: rollout statistics over the batch (`env/<tag>/...` for each logging tag that
  picks out a strict subset of the groups), e.g. `env/all/reward/total` (mean total reward of a
  trajectory: its step rewards plus its group reward), `env/all/ac_tokens_per_turn` (response
  length), plus the mean of every metric the envs and `compute_group_rewards` reported;
- `by_group/frac_mixed|frac_all_good|frac_all_bad`: groups whose rewards differ (the only ones
  that carry a learning signal), or are all equal and good / bad;
- `optim/kl_sample_train_v1|v2`, `optim/entropy`: sampler vs trainer logprobs of the trained
  tokens (a large value means the sampled data is off-policy for the trainer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cookbook.client.types import Datum
from cookbook.rl.advantages import is_constant
from cookbook.rl.data_processing import MASK_KEY, loss_input
from cookbook.rl.types import TrajectoryGroup

GOOD_REWARD_THRESHOLD = 0.5
"""A group whose members all got at least this reward counts as "all good" (rewards in [0, 1])."""


def mean_of_dicts(dicts: Sequence[Mapping[str, float | int]]) -> dict[str, float]:
    """Per key, the mean over the dicts that have it (envs may report different keys)."""
    values: dict[str, list[float]] = {}
    for d in dicts:
        for key, value in d.items():
            values.setdefault(key, []).append(float(value))
    return {key: float(np.mean(vals)) for key, vals in values.items()}


def rollout_metrics(groups_P: Sequence[TrajectoryGroup]) -> dict[str, float]:
    """Episode, turn, token and reward statistics of some groups (unprefixed names)."""
    trajectories = [traj for group in groups_P for traj in group.trajectories_G]
    transitions = [tr for traj in trajectories for tr in traj.transitions]
    if not transitions:
        raise ValueError("no transitions to compute rollout metrics from")
    ac_tokens = sum(len(tr.ac.tokens) for tr in transitions)
    ob_tokens = sum(tr.ob.length for tr in transitions)
    rewards = np.asarray([r for group in groups_P for r in group.get_total_rewards()], dtype=np.float64)
    metrics = mean_of_dicts([tr.metrics for tr in transitions] + [m for g in groups_P for m in g.metrics_G])
    metrics.update(
        {
            "reward/total": float(rewards.mean()),
            "reward/total_min": float(rewards.min()),
            "reward/total_max": float(rewards.max()),
            "ac_tokens_per_turn": ac_tokens / len(transitions),
            "ob_tokens_per_turn": ob_tokens / len(transitions),
            "turns_per_episode": len(transitions) / len(trajectories),
            "total_episodes": len(trajectories),
            "total_turns": len(transitions),
            "total_ac_tokens": ac_tokens,
            "total_ob_tokens": ob_tokens,
            "frac_stopped": float(np.mean([tr.ac.stop_reason == "stop" for tr in transitions])),
        }
    )
    return metrics


def by_group_metrics(
    groups_P: Sequence[TrajectoryGroup], good_threshold: float = GOOD_REWARD_THRESHOLD
) -> dict[str, float]:
    """The fractions of groups with mixed rewards, all-equal good rewards, and all-equal bad rewards."""
    if not groups_P:
        raise ValueError("no groups to compute by-group metrics from")
    n_mixed = n_good = n_bad = 0
    for group in groups_P:
        rewards_G = group.get_total_rewards()
        if not is_constant(rewards_G):
            n_mixed += 1
        elif rewards_G[0] >= good_threshold:
            n_good += 1
        else:
            n_bad += 1
    n = len(groups_P)
    return {
        "by_group/frac_mixed": n_mixed / n,
        "by_group/frac_all_good": n_good / n,
        "by_group/frac_all_bad": n_bad / n,
    }


def env_metrics(groups_P: Sequence[TrajectoryGroup], tags_P: Sequence[Sequence[str]]) -> dict[str, float]:
    """`env/all/...` over the batch, `env/<tag>/...` per tag that selects a strict subset, and `by_group/...`."""
    if len(groups_P) != len(tags_P):
        raise ValueError(f"{len(groups_P)} groups but {len(tags_P)} tag lists")
    metrics = {f"env/all/{k}": v for k, v in rollout_metrics(groups_P).items()}
    groups_by_tag: dict[str, list[TrajectoryGroup]] = {}
    for group, tags in zip(groups_P, tags_P, strict=True):
        for tag in dict.fromkeys(tags):
            groups_by_tag.setdefault(tag, []).append(group)
    for tag, tagged in groups_by_tag.items():
        if len(tagged) < len(groups_P):
            metrics.update({f"env/{tag}/{k}": v for k, v in rollout_metrics(tagged).items()})
    metrics.update(by_group_metrics(groups_P))
    return metrics


def reward_stats(prefix: str, values_P: Sequence[np.ndarray]) -> dict[str, float]:
    """`<prefix>` (mean), `<prefix>_min` and `<prefix>_max` over every trajectory of the batch."""
    flat = np.concatenate([np.asarray(v, dtype=np.float64) for v in values_P]) if values_P else np.array([])
    if flat.size == 0:
        return {}
    return {
        prefix: float(flat.mean()),
        f"{prefix}_min": float(flat.min()),
        f"{prefix}_max": float(flat.max()),
    }


def _action_values(datum: Datum, key: str) -> np.ndarray:
    """A per-token loss input of a Datum, restricted to its action tokens."""
    return loss_input(datum, key).astype(np.float64)[loss_input(datum, MASK_KEY) > 0]


def entropy_metrics(data_D: Sequence[Datum]) -> dict[str, float]:
    """`optim/entropy` = -mean(lq) over action tokens: a sample estimate of the sampler's entropy."""
    lq = np.concatenate([_action_values(datum, "logprobs") for datum in data_D]) if data_D else np.array([])
    return {"optim/entropy": float(-lq.mean())} if lq.size else {}


def sample_train_kl_metrics(
    data_D: Sequence[Datum],
    training_logprobs_D: Sequence[np.ndarray],
) -> dict[str, float]:
    """How far the trainer's logprobs (lp) of the sampled tokens are from the sampler's (lq).

    Over action tokens: v1 = mean(lq - lp), v2 = mean((lq - lp)^2) / 2. Both are ~0 when the
    sampler and the trainer compute the same distribution (same weights, same numerics).
    """
    if len(data_D) != len(training_logprobs_D):
        raise ValueError(f"{len(data_D)} datums but {len(training_logprobs_D)} training logprob arrays")
    diffs = []
    for d, (datum, train_lp_T) in enumerate(zip(data_D, training_logprobs_D, strict=True)):
        train_lp_T = np.asarray(train_lp_T, dtype=np.float64)
        n_targets = len(datum.loss_fn_inputs["target_tokens"].data)
        if train_lp_T.shape != (n_targets,):
            raise ValueError(f"datum {d}: {train_lp_T.size} training logprobs for {n_targets} target tokens")
        action = loss_input(datum, MASK_KEY) > 0
        diffs.append(_action_values(datum, "logprobs") - train_lp_T[action])
    diff = np.concatenate(diffs) if diffs else np.array([])
    if diff.size == 0:
        return {}
    return {
        "optim/kl_sample_train_v1": float(diff.mean()),
        "optim/kl_sample_train_v2": float(0.5 * np.mean(diff**2)),
    }
