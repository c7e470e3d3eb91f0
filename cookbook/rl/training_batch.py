"""One step's rollouts turned into what the trainer gets: Datums with advantages, and their metrics.

The order matters and is the same as in InstructGPT-style RLHF:

1. (optionally) drop groups whose env rewards are all equal: they carry no signal;
2. lay every trajectory out as Datums (tokens, sampler logprobs, action mask);
3. with a reference policy: score the same tokens under it, d_t = log q - log ref;
4. rewards: each trajectory's env reward, minus coef * sum_t d_t in "sequence" KL mode;
5. advantages: group-centred rewards, on action tokens; "token" KL mode adds
   coef * (mean(d) - d_t) per token.

A batch whose advantages are all zero (every group constant, no KL term) has nothing to teach:
`has_signal` is False and the loop skips the update instead of sending an all-zero loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cookbook.client.types import Datum
from cookbook.rl import kl_penalty
from cookbook.rl.advantages import AdvantageMode, advantages_by_mode, remove_constant_reward_groups
from cookbook.rl.data_processing import (
    MASK_KEY,
    DatumOwner,
    assemble_training_data,
    loss_input,
    with_advantages,
)
from cookbook.rl.kl_penalty import KL_PENALTY_MODES, KLPenaltyMode
from cookbook.rl.metrics import reward_stats
from cookbook.rl.types import TrajectoryGroup

logger = logging.getLogger(__name__)


@dataclass
class TrainingBatch:
    """The trained groups, their Datums (with the local mask) and the numbers behind the advantages.

    Arrays indexed `[p][g]` are per trajectory: group p of `groups_P`, member g.
    """

    groups_P: list[TrajectoryGroup]
    data_D: list[Datum]
    owners_D: list[DatumOwner]
    env_rewards_P: list[np.ndarray]
    kl_penalties_P: list[np.ndarray] | None
    rewards_P: list[np.ndarray]
    advantages_P: list[np.ndarray]
    kl_policy_ref: float | None

    @property
    def has_signal(self) -> bool:
        """Whether any token has a non-zero advantage (otherwise an update would change nothing)."""
        return any(np.any(loss_input(datum, "advantages") != 0) for datum in self.data_D)

    def metrics(self) -> dict[str, float]:
        """The KL-to-reference and reward-penalty numbers of this batch (`env/all/reward/...`)."""
        out: dict[str, float] = {"train/num_groups": len(self.groups_P), "train/num_datums": len(self.data_D)}
        if self.kl_policy_ref is not None:
            out["kl_policy_ref"] = self.kl_policy_ref
        if self.kl_penalties_P is not None:
            out.update(reward_stats("env/all/reward/kl_penalty", self.kl_penalties_P))
            out.update(reward_stats("env/all/reward/penalized", self.rewards_P))
        return out


async def build_training_batch(
    groups_P: Sequence[TrajectoryGroup],
    *,
    reference: kl_penalty.ReferencePolicy | None,
    kl_penalty_coef: float = 0.0,
    kl_penalty_mode: KLPenaltyMode = "sequence",
    remove_constant_groups: bool = False,
    advantage_mode: AdvantageMode = "group",
) -> TrainingBatch:
    """Advantages (and KL penalty) for a step's groups; `reference` None means no KL at all."""
    if kl_penalty_mode not in KL_PENALTY_MODES:
        raise ValueError(f"kl_penalty_mode must be one of {KL_PENALTY_MODES}, got {kl_penalty_mode!r}")
    if kl_penalty_coef < 0:
        raise ValueError(f"kl_penalty_coef must be >= 0, got {kl_penalty_coef}")
    if kl_penalty_coef > 0 and reference is None:
        raise ValueError("kl_penalty_coef > 0 needs a reference sampling client")
    groups = remove_constant_reward_groups(groups_P) if remove_constant_groups else list(groups_P)
    env_rewards_P = [np.asarray(group.get_total_rewards(), dtype=np.float64) for group in groups]
    # Steps 2-3: the token layout does not depend on the advantages, so lay out first (advantage 0).
    data_D, owners_D = assemble_training_data(groups, [np.zeros(len(r)) for r in env_rewards_P])

    log_ratios_D: list[np.ndarray] | None = None
    kl_policy_ref = None
    if reference is not None and data_D:
        reference_logprobs_D = await kl_penalty.compute_reference_logprobs(reference, data_D)
        log_ratios_D = kl_penalty.policy_ref_log_ratios(data_D, reference_logprobs_D)
        kl_policy_ref = kl_penalty.mean_over_actions(log_ratios_D, data_D)

    kl_penalties_P = None
    rewards_P = env_rewards_P
    if log_ratios_D is not None and kl_penalty_coef > 0 and kl_penalty_mode == "sequence":
        sequence_kl_P = kl_penalty.sequence_kl_estimates(
            log_ratios_D, owners_D, [len(r) for r in env_rewards_P]
        )
        kl_penalties_P = [kl_penalty_coef * kl for kl in sequence_kl_P]
        rewards_P = [r - penalty for r, penalty in zip(env_rewards_P, kl_penalties_P, strict=True)]

    advantages_P = advantages_by_mode(rewards_P, advantage_mode)
    advantages_D = [
        loss_input(datum, MASK_KEY) * advantages_P[owner.group_idx][owner.traj_idx]
        for datum, owner in zip(data_D, owners_D, strict=True)
    ]
    if log_ratios_D is not None and kl_penalty_coef > 0 and kl_penalty_mode == "token":
        token_terms_D = kl_penalty.token_kl_advantage_terms(log_ratios_D, data_D, kl_penalty_coef)
        advantages_D = [a + t for a, t in zip(advantages_D, token_terms_D, strict=True)]
    data_D = [with_advantages(datum, adv) for datum, adv in zip(data_D, advantages_D, strict=True)]
    return TrainingBatch(
        groups_P=groups,
        data_D=data_D,
        owners_D=owners_D,
        env_rewards_P=env_rewards_P,
        kl_penalties_P=kl_penalties_P,
        rewards_P=rewards_P,
        advantages_P=advantages_P,
        kl_policy_ref=kl_policy_ref,
    )
