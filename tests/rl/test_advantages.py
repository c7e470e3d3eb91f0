"""Group-centred advantages: A = R - mean_G(R), no std normalisation, constant groups give zeros."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.rl.advantages import (
    compute_advantages,
    group_centered_advantages,
    is_constant,
    remove_constant_reward_groups,
)

from .builders import group


def test_advantage_is_reward_minus_group_mean_without_std_normalisation() -> None:
    advantages = group_centered_advantages([1.0, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(advantages, [0.0, -1.0, -1.0, 2.0])
    # Scaling the rewards scales the advantages: no division by the group's std.
    np.testing.assert_allclose(group_centered_advantages([10.0, 0.0, 0.0, 30.0]), 10 * advantages)


def test_advantages_of_each_group_sum_to_zero_and_groups_are_independent() -> None:
    # Total reward = step reward + group reward.
    advantages_P = compute_advantages([group([1.0, 1.0], final_rewards_G=[0.0, 1.0]), group([5.0, 5.0, 8.0])])
    np.testing.assert_allclose(advantages_P[0], [-0.5, 0.5])
    np.testing.assert_allclose(advantages_P[1], [-1.0, -1.0, 2.0])
    assert all(abs(a.sum()) < 1e-12 for a in advantages_P)


def test_constant_group_gets_exact_zeros_despite_rounding() -> None:
    rewards = [0.1 + 0.2, 0.3, 0.2 + 0.1]  # equal up to the last bit
    assert is_constant(rewards)
    assert not np.any(group_centered_advantages(rewards))
    assert not is_constant([0.0, 1e-6])


def test_single_member_group_has_zero_advantage() -> None:
    assert group_centered_advantages([0.7]).tolist() == [0.0]


@pytest.mark.parametrize("bad", [[], [float("nan"), 1.0], [float("inf")]])
def test_bad_rewards_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="reward"):
        group_centered_advantages(bad)


def test_remove_constant_reward_groups_uses_total_rewards() -> None:
    mixed = group([1.0, 0.0])
    constant = group([1.0, 1.0])
    # Step rewards differ but the group rewards even them out: the totals are constant.
    evened = group([1.0, 0.0], final_rewards_G=[0.0, 1.0])
    assert remove_constant_reward_groups([mixed, constant, evened]) == [mixed]
    assert remove_constant_reward_groups([constant]) == []


def test_batch_normalised_advantages_whiten_over_every_answer_of_the_step() -> None:
    from cookbook.rl.advantages import advantages_by_mode

    rewards_P = [[1.0, 3.0], [5.0, 7.0, 9.0]]
    advantages_P = advantages_by_mode(rewards_P, "batch")
    every = np.concatenate(advantages_P)
    assert every.mean() == pytest.approx(0.0, abs=1e-12) and every.std() == pytest.approx(1.0)
    np.testing.assert_allclose(advantages_P[0], (np.array([1.0, 3.0]) - 5.0) / np.std([1, 3, 5, 7, 9]))
    # Across prompts: a group whose answers all score high keeps positive advantages.
    assert all(a > 0 for a in advantages_by_mode([[0.0, 0.0], [2.0, 2.0]], "batch")[1])
    assert [a.tolist() for a in advantages_by_mode([[2.0], [2.0, 2.0]], "batch")] == [[0.0], [0.0, 0.0]]
    np.testing.assert_allclose(advantages_by_mode(rewards_P, "group")[1], [-2.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="advantage mode"):
        advantages_by_mode(rewards_P, "whitened")  # type: ignore[arg-type]
