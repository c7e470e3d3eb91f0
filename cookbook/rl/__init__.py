"""Reinforcement learning on the cookbook's clients: environments, token-in/token-out rollouts,
group-centred advantages, a KL penalty to a reference policy, and the on-policy training loop.

Start with `types` (Env, EnvGroupBuilder, RLDataset), then `train.Config` / `train.main`.
`train` is not imported here so that defining environments does not load the whole loop.
"""

from cookbook.rl.advantages import (
    compute_advantages,
    group_centered_advantages,
    remove_constant_reward_groups,
)
from cookbook.rl.completers import SamplingClientTokenCompleter, TokenCompleter
from cookbook.rl.data_processing import DatumOwner, assemble_training_data, remove_mask, trajectory_to_data
from cookbook.rl.kl_penalty import KLPenaltyMode
from cookbook.rl.rollouts import derive_seed, do_batch_rollouts, do_group_rollout, do_single_rollout
from cookbook.rl.test_set_evaluator import RLTestSetEvaluator
from cookbook.rl.training_batch import TrainingBatch, build_training_batch
from cookbook.rl.types import (
    Action,
    Env,
    EnvGroupBuilder,
    Logprobs,
    Logs,
    Metrics,
    Observation,
    RLDataset,
    RLDatasetBuilder,
    StepResult,
    StopCondition,
    TokensWithLogprobs,
    Trajectory,
    TrajectoryGroup,
    Transition,
)

__all__ = [
    "Action",
    "DatumOwner",
    "Env",
    "EnvGroupBuilder",
    "KLPenaltyMode",
    "Logprobs",
    "Logs",
    "Metrics",
    "Observation",
    "RLDataset",
    "RLDatasetBuilder",
    "RLTestSetEvaluator",
    "SamplingClientTokenCompleter",
    "StepResult",
    "StopCondition",
    "TokenCompleter",
    "TokensWithLogprobs",
    "TrainingBatch",
    "Trajectory",
    "TrajectoryGroup",
    "Transition",
    "assemble_training_data",
    "build_training_batch",
    "compute_advantages",
    "derive_seed",
    "do_batch_rollouts",
    "do_group_rollout",
    "do_single_rollout",
    "group_centered_advantages",
    "remove_constant_reward_groups",
    "remove_mask",
    "trajectory_to_data",
]
