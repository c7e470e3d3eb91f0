"""Reward-model training data: each comparison one Bradley-Terry example, a [chosen, rejected] pair.

Every batch is [chosen_0, rejected_0, chosen_1, rejected_1, ...], the layout the server's
`bradley_terry` loss reads. Each sequence is the rendered conversation (prompt + answer, end of
turn included), with the same comparison builders and chat renderers as the pairwise preference
model. Ties are left out (neither side is chosen); a pair longer than `max_length` on either side
is dropped whole (its score would be read off a truncated answer).
"""

from __future__ import annotations

import chz

from cookbook.client.types import Datum
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder, comparison_supervised_dataset
from cookbook.preference.reward_model import reward_datum
from cookbook.preference.types import LabeledComparison
from cookbook.renderers import Renderer
from cookbook.supervised.common import NoTrainedTokensError
from cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset


def reward_pair(labeled: LabeledComparison, renderer: Renderer, max_length: int | None) -> list[Datum]:
    """[chosen datum, rejected datum] of one (non-tie) comparison."""
    chosen, rejected = labeled.chosen_and_rejected()
    prompt = labeled.comparison.prompt_conversation
    pair = [reward_datum(prompt, completion, renderer) for completion in (chosen, rejected)]
    if max_length is not None and any(d.model_input.length > max_length for d in pair):
        raise NoTrainedTokensError(f"a side of the pair is longer than max_length={max_length}")
    return pair


def untied(comparisons: list[LabeledComparison]) -> list[LabeledComparison]:
    return [c for c in comparisons if c.label != "Tie"]


@chz.chz
class RewardDatasetBuilderFromComparisons(ChatDatasetBuilder):
    """Pairs for a scalar reward model. `common_config.batch_size` counts comparisons: a batch holds 2x
    that many datums. The test set (if the comparison builder has one, and `include_test_set`) is
    one batch of all its pairs."""

    comparison_builder: ComparisonDatasetBuilder
    include_test_set: bool = True

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        train, test = self.comparison_builder.get_labeled_comparisons()
        renderer = self.renderer
        max_length = self.common_config.max_length

        def to_pair(labeled: LabeledComparison, index: int) -> list[Datum]:
            return reward_pair(labeled, renderer, max_length)

        train_set = comparison_supervised_dataset(untied(train), self.common_config.batch_size, to_pair)
        if test is None or not self.include_test_set:
            return train_set, None
        test_pairs = untied(test)
        return train_set, comparison_supervised_dataset(test_pairs, len(test_pairs), to_pair)
