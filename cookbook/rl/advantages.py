"""Advantages from rewards, by `AdvantageMode`.

"group" (the default): each answer is scored against its siblings (same prompt),
A = R - mean_G(R), with no division by the group's standard deviation (GRPO divides; Tinker's
cookbook and Dr. GRPO do not, since dividing over-weights groups whose answers barely differ).
A group whose rewards are all equal has zero advantages: it teaches nothing, and can be
dropped before training with `remove_constant_reward_groups`.

"batch": the classic RLHF recipe's whitening, A = (R - mean_B(R)) / std_B(R) over every answer
of the batch: a scalar reward model's scores carry meaning across prompts, so an answer is
compared with all of the step's answers, not only its siblings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from cookbook.rl.types import TrajectoryGroup

logger = logging.getLogger(__name__)

AdvantageMode = Literal["group", "batch"]
ADVANTAGE_MODES: tuple[str, ...] = get_args(AdvantageMode)

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


def batch_normalized_advantages(rewards_P: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """A = (R - mean) / std over every answer of every group (all zero when the rewards are all equal)."""
    arrays = [np.asarray(rewards_G, dtype=np.float64) for rewards_G in rewards_P]
    every = np.concatenate(arrays) if arrays else np.zeros(0)
    if not np.isfinite(every).all():
        raise ValueError(f"rewards must be finite, got {every.tolist()}")
    if every.size == 0 or is_constant(every.tolist()):
        return [np.zeros_like(a) for a in arrays]
    mean, std = every.mean(), every.std()
    return [(a - mean) / std for a in arrays]


def advantages_by_mode(rewards_P: Sequence[Sequence[float]], mode: AdvantageMode) -> list[np.ndarray]:
    """Each group's advantages under `mode` (see the module docstring)."""
    if mode == "batch":
        return batch_normalized_advantages(rewards_P)
    if mode == "group":
        return [group_centered_advantages(rewards_G) for rewards_G in rewards_P]
    raise ValueError(f"advantage mode must be one of {ADVANTAGE_MODES}, got {mode!r}")


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
