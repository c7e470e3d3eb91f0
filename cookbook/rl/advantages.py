"""Group-centred advantages: each answer is scored against its siblings (same prompt).

A = R - mean_G(R), with no division by the group's standard deviation (GRPO divides; Tinker's
cookbook and Dr. GRPO do not, since dividing over-weights groups whose answers barely differ).
A group whose rewards are all equal has zero advantages: it teaches nothing, and can be
dropped before training with `remove_constant_reward_groups`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from cookbook.rl.types import TrajectoryGroup

logger = logging.getLogger(__name__)

CONSTANT_REWARD_ATOL = 1e-9
"""Rewards closer than this count as equal (sums of the same floats in another order differ in
the last bits)."""


def is_constant(rewards_G: Sequence[float]) -> bool:
    """True when every member of the group got the same reward."""
    return float(np.ptp(np.asarray(rewards_G, dtype=np.float64))) <= CONSTANT_REWARD_ATOL


def group_centered_advantages(rewards_G: Sequence[float]) -> np.ndarray:
    """A_g = R_g - mean(R) over one group."""
    rewards = np.asarray(rewards_G, dtype=np.float64)
    if rewards.ndim != 1 or rewards.size == 0:
        raise ValueError(f"a group needs a non-empty 1-D list of rewards, got shape {rewards.shape}")
    if not np.isfinite(rewards).all():
        raise ValueError(f"rewards must be finite, got {rewards.tolist()}")
    if is_constant(rewards):
        return np.zeros_like(rewards)
    return rewards - rewards.mean()


def compute_advantages(groups_P: Sequence[TrajectoryGroup]) -> list[np.ndarray]:
    """Per group of a batch, the group-centred advantages of its members' total rewards."""
    return [group_centered_advantages(group.get_total_rewards()) for group in groups_P]


def remove_constant_reward_groups(groups_P: Sequence[TrajectoryGroup]) -> list[TrajectoryGroup]:
    """The groups whose members' total rewards differ (possibly none: the caller skips the update)."""
    kept = [group for group in groups_P if not is_constant(group.get_total_rewards())]
    if len(kept) < len(groups_P):
        logger.info(
            "removed %d of %d groups whose rewards were all equal", len(groups_P) - len(kept), len(groups_P)
        )
    return kept
