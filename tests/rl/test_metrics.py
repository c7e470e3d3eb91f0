"""RL diagnostics computed on hand-made rollouts and logprobs."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.rl.data_processing import trajectory_to_data
from cookbook.rl.metrics import (
    by_group_metrics,
    entropy_metrics,
    env_metrics,
    mean_of_dicts,
    reward_stats,
    sample_train_kl_metrics,
)
from cookbook.rl.types import TrajectoryGroup

from .builders import group, trajectory, turn


def test_env_metrics_count_tokens_turns_and_rewards() -> None:
    g1 = group([1.0, 0.0], ac_lengths_G=[2, 4], metrics_G=[{"format": 1.0}, {"format": 0.0}])
    two_turns = trajectory(
        turn([1, 2], [5], reward=0.5, metrics={"correct": 1.0}),
        turn([1, 2, 5, 6], [7, 8, 9], reward=0.25, metrics={"correct": 0.0}),
    )
    g2 = TrajectoryGroup(trajectories_G=[two_turns], final_rewards_G=[1.0], metrics_G=[{}])
    metrics = env_metrics([g1, g2], [["a"], ["a", "b"]])

    assert metrics["env/all/total_episodes"] == 3
    assert metrics["env/all/total_turns"] == 4
    assert metrics["env/all/turns_per_episode"] == pytest.approx(4 / 3)
    assert metrics["env/all/total_ac_tokens"] == 2 + 4 + 1 + 3
    assert metrics["env/all/ac_tokens_per_turn"] == pytest.approx(10 / 4)
    assert metrics["env/all/ob_tokens_per_turn"] == pytest.approx((3 + 3 + 2 + 4) / 4)
    # Total reward per trajectory: 1, 0 and 0.5 + 0.25 + 1 (steps + group reward)
    assert metrics["env/all/reward/total"] == pytest.approx((1 + 0 + 1.75) / 3)
    assert (metrics["env/all/reward/total_min"], metrics["env/all/reward/total_max"]) == (0.0, 1.75)
    # Env metrics are averaged over those who report them.
    assert metrics["env/all/format"] == 0.5 and metrics["env/all/correct"] == 0.5
    # Tag "a" covers every group (no separate entry); tag "b" covers only g2.
    assert not any(k.startswith("env/a/") for k in metrics)
    assert metrics["env/b/reward/total"] == pytest.approx(1.75)
    assert metrics["env/b/total_episodes"] == 1


def test_by_group_fractions() -> None:
    groups = [group([1.0, 0.0]), group([1.0, 1.0]), group([0.0, 0.0]), group([0.2, 0.2])]
    assert by_group_metrics(groups) == {
        "by_group/frac_mixed": 0.25,
        "by_group/frac_all_good": 0.25,
        "by_group/frac_all_bad": 0.5,
    }


def test_sample_train_kl_and_entropy_use_only_action_tokens() -> None:
    traj = trajectory(turn([5, 6, 7], [40, 41], logprobs=[-1.0, -2.0]))
    [datum] = trajectory_to_data(traj, advantage=1.0)
    # Trainer logprobs of targets [6, 7, 40, 41]; the observation positions must be ignored.
    training_logprobs = np.array([-50.0, -50.0, -1.5, -1.0])
    metrics = sample_train_kl_metrics([datum], [training_logprobs])
    # lq - lp = [0.5, -1.0]
    assert metrics["optim/kl_sample_train_v1"] == pytest.approx(-0.25)
    assert metrics["optim/kl_sample_train_v2"] == pytest.approx(0.5 * (0.25 + 1.0) / 2)
    assert entropy_metrics([datum]) == {"optim/entropy": pytest.approx(1.5)}
    with pytest.raises(ValueError, match="training logprobs"):
        sample_train_kl_metrics([datum], [training_logprobs[:3]])


def test_reward_stats_and_mean_of_dicts() -> None:
    assert reward_stats("r", [np.array([1.0, 3.0]), np.array([-1.0])]) == {
        "r": 1.0,
        "r_min": -1.0,
        "r_max": 3.0,
    }
    assert reward_stats("r", []) == {}
    assert mean_of_dicts([{"a": 1, "b": 2}, {"a": 3}]) == {"a": 2.0, "b": 2.0}
