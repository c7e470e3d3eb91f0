"""DPO training data: each comparison as a (chosen, rejected) pair of datums, side by side.

Every batch is [chosen_0, rejected_0, chosen_1, rejected_1, ...]: the DPO loss reads datums two
at a time. Both sequences are prompt + completion with the completion's last assistant message
trained (or `common_config.train_on_what`), weights unnormalised (reduction "none") since DPO
compares summed sequence logprobs. Ties are left out (they have no chosen side), and a pair is
dropped whole when truncation leaves either side with nothing to train.
"""

from __future__ import annotations

import chz

from cookbook.client.types import Datum
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder, comparison_supervised_dataset
from cookbook.preference.types import LabeledComparison
from cookbook.renderers import Renderer, TrainOnWhat
from cookbook.supervised.data import conversation_to_datum
from cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset


def dpo_pair(
    labeled: LabeledComparison,
    renderer: Renderer,
    max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
) -> list[Datum]:
    """[chosen datum, rejected datum] of one (non-tie) comparison."""
    chosen, rejected = labeled.chosen_and_rejected()
    prompt = labeled.comparison.prompt_conversation
    return [
        conversation_to_datum([*prompt, *completion], renderer, max_length, train_on_what, reduction="none")
        for completion in (chosen, rejected)
    ]


@chz.chz
class DPODatasetBuilderFromComparisons(ChatDatasetBuilder):
    """Pairs for DPO. `common_config.batch_size` counts comparisons: a batch holds 2x that many datums.

    The test set (if the comparison builder has one) is one batch of all its pairs.
    """

    comparison_builder: ComparisonDatasetBuilder

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        train, test = self.comparison_builder.get_labeled_comparisons()
        renderer = self.renderer
        cfg = self.common_config
        train_on_what = cfg.train_on_what or TrainOnWhat.LAST_ASSISTANT_MESSAGE

        def to_pair(labeled: LabeledComparison, index: int) -> list[Datum]:
            return dpo_pair(labeled, renderer, cfg.max_length, train_on_what)

        train_set = comparison_supervised_dataset(_untied(train), cfg.batch_size, to_pair)
        if test is None:
            return train_set, None
        test_pairs = _untied(test)
        return train_set, comparison_supervised_dataset(test_pairs, len(test_pairs), to_pair)


def _untied(comparisons: list[LabeledComparison]) -> list[LabeledComparison]:
    return [c for c in comparisons if c.label != "Tie"]
