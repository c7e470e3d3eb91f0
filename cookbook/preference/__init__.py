"""Learning from pairwise preferences: comparisons, judges (pairwise preference models and scalar
reward models), their training data and evaluators, and DPO. The DPO loop itself is
`cookbook.preference.train_dpo`, the scalar reward-model loop `cookbook.preference.train_reward_model`."""

from cookbook.preference.comparison_datasets import (
    ChatDatasetBuilderFromComparisons,
    ComparisonBuilderFromJsonl,
    ComparisonDatasetBuilder,
    comparison_supervised_dataset,
)
from cookbook.preference.comparison_renderer import ComparisonRenderer, ComparisonRendererFromChatRenderer
from cookbook.preference.dpo_datasets import DPODatasetBuilderFromComparisons
from cookbook.preference.evaluators import (
    ComparisonEvaluator,
    ComparisonEvaluatorBuilder,
    PreferenceAccuracyEvaluator,
    PreferenceAccuracyEvaluatorBuilder,
)
from cookbook.preference.gold import GoldPreferenceModel, GoldPreferenceModelBuilder, comparison_kind
from cookbook.preference.preference_model import (
    PreferenceModelBuilderFromChatRenderer,
    PreferenceModelFromChatRenderer,
    soft_score,
)
from cookbook.preference.reward_datasets import RewardDatasetBuilderFromComparisons
from cookbook.preference.reward_evaluator import RewardAccuracyEvaluator, RewardAccuracyEvaluatorBuilder
from cookbook.preference.reward_model import RewardModel, RewardModelBuilder
from cookbook.preference.types import (
    Comparison,
    Label,
    LabeledComparison,
    PreferenceJudgement,
    PreferenceModel,
    PreferenceModelBuilder,
)

__all__ = [
    "ChatDatasetBuilderFromComparisons",
    "Comparison",
    "ComparisonBuilderFromJsonl",
    "ComparisonDatasetBuilder",
    "ComparisonEvaluator",
    "ComparisonEvaluatorBuilder",
    "ComparisonRenderer",
    "ComparisonRendererFromChatRenderer",
    "DPODatasetBuilderFromComparisons",
    "GoldPreferenceModel",
    "GoldPreferenceModelBuilder",
    "Label",
    "LabeledComparison",
    "PreferenceAccuracyEvaluator",
    "PreferenceAccuracyEvaluatorBuilder",
    "PreferenceJudgement",
    "PreferenceModel",
    "PreferenceModelBuilder",
    "PreferenceModelBuilderFromChatRenderer",
    "PreferenceModelFromChatRenderer",
    "RewardAccuracyEvaluator",
    "RewardAccuracyEvaluatorBuilder",
    "RewardDatasetBuilderFromComparisons",
    "RewardModel",
    "RewardModelBuilder",
    "comparison_kind",
    "comparison_supervised_dataset",
    "soft_score",
]
