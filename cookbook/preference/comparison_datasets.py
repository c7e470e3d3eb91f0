"""Comparison data sets, and the supervised data that trains a preference model on them.

A `ComparisonDatasetBuilder` reads rows (hub, local files, bundled data) and turns each into a
`LabeledComparison`, or None for a malformed row; the rows it skips are counted and logged once
per split. `ChatDatasetBuilderFromComparisons` renders the comparisons for preference-model
training (one trained label token per sequence). By default each pair appears in BOTH orders,
in the SAME batch: the model then cannot lower its loss by favouring a position, and in the
prototype this raised test accuracy from 0.78 (one random order) to 0.85.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import chz
import datasets

from cookbook.client.types import Datum
from cookbook.preference.comparison_renderer import ComparisonRendererFromChatRenderer
from cookbook.preference.types import LabeledComparison
from cookbook.supervised.common import NoTrainedTokensError
from cookbook.supervised.data import SupervisedDatasetFromHFDataset
from cookbook.supervised.sources import load_rows
from cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset

logger = logging.getLogger(__name__)

Row = dict[str, Any]


@chz.chz
class ComparisonDatasetBuilder:
    """Where comparison rows come from and how a row becomes a labeled comparison."""

    def get_train_and_test_datasets(self) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        """The raw train rows and the test rows (None when there is no test split)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_train_and_test_datasets")

    def example_to_labeled_comparison(self, example: Row) -> LabeledComparison | None:
        """One row as a labeled comparison; None for a row that cannot be one (it is skipped)."""
        raise NotImplementedError(f"{type(self).__name__} must implement example_to_labeled_comparison")

    def get_labeled_comparisons(self) -> tuple[list[LabeledComparison], list[LabeledComparison] | None]:
        """Every valid row of each split, in the order of the rows."""
        train_rows, test_rows = self.get_train_and_test_datasets()
        train = self.convert_rows(train_rows, "train")
        return train, None if test_rows is None else self.convert_rows(test_rows, "test")

    def convert_rows(self, rows: datasets.Dataset | Sequence[Row], split: str) -> list[LabeledComparison]:
        """Rows to labeled comparisons, skipping (and counting) the ones the builder rejects."""
        if isinstance(rows, datasets.Dataset):
            rows = rows.to_list()  # one Arrow-to-Python conversion instead of one per row
        converted = [self.example_to_labeled_comparison(row) for row in rows]
        kept = [c for c in converted if c is not None]
        skipped = len(converted) - len(kept)
        if skipped:
            logger.warning(
                "%s: skipped %d of %d %s rows that are not valid comparisons",
                type(self).__name__,
                skipped,
                len(converted),
                split,
            )
        if not kept:
            raise ValueError(
                f"{type(self).__name__}: none of the {len(converted)} {split} rows is a valid comparison"
            )
        return kept


@chz.chz
class ComparisonBuilderFromJsonl(ComparisonDatasetBuilder):
    """Labeled comparisons stored as rows {"comparison": {prompt_conversation, completion_A,
    completion_B}, "label": "A"|"B"|"Tie", "tags"?: {...}} in JSON/JSONL(.gz)/Parquet files."""

    train_path: str
    test_path: str | None = None

    def get_train_and_test_datasets(self) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        train = load_rows(self.train_path, "train")
        return train, None if self.test_path is None else load_rows(self.test_path, "test")

    def example_to_labeled_comparison(self, example: Row) -> LabeledComparison | None:
        return LabeledComparison.from_dict(example)


def comparison_supervised_dataset(
    comparisons: Sequence[LabeledComparison],
    comparisons_per_batch: int,
    to_datums: Callable[[LabeledComparison, int], list[Datum]],
) -> SupervisedDataset:
    """Batches of `comparisons_per_batch` comparisons, each turned into datums by `to_datums(c, index)`.

    A comparison that truncation leaves with nothing to train (`NoTrainedTokensError`) is
    dropped whole, so the datums of one comparison (both orders, or chosen and rejected) are
    always kept or dropped together.
    """
    items = list(comparisons)

    def flatmap(row: Row) -> list[Datum]:
        index = row["index"]
        try:
            return to_datums(items[index], index)
        except NoTrainedTokensError as exc:
            logger.warning("dropping comparison %d: %s", index, exc)
            return []

    rows = datasets.Dataset.from_dict({"index": list(range(len(items)))})
    return SupervisedDatasetFromHFDataset(rows, comparisons_per_batch, flatmap_fn=flatmap)


@chz.chz
class ChatDatasetBuilderFromComparisons(ChatDatasetBuilder):
    """Preference-model training data: one Datum per comparison order, one trained label token each.

    `common_config.batch_size` counts sequences. With `both_orders` (the default) a batch holds
    batch_size / 2 comparisons, each as (A, B) and as (B, A) with the label flipped; otherwise one
    order per comparison, A/B swapped by a fair coin that depends only on the comparison's index.
    Weights are unnormalised (reduction "none"): each sequence contributes its label token's NLL.
    The test set is one batch of all test comparisons in both orders (its `test/nll` is then the
    SFT loop's); set `include_test_set=False` when a `PreferenceAccuracyEvaluator` measures it.
    """

    comparison_builder: ComparisonDatasetBuilder
    both_orders: bool = True
    include_test_set: bool = True

    @chz.validate
    def _check_batch(self) -> None:
        if self.both_orders and self.common_config.batch_size % 2:
            raise ValueError(
                f"batch_size counts sequences and both_orders puts each comparison in twice, so it must "
                f"be even; got {self.common_config.batch_size}"
            )

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        train, test = self.comparison_builder.get_labeled_comparisons()
        renderer = ComparisonRendererFromChatRenderer(self.renderer)
        max_length = self.common_config.max_length

        def both(labeled: LabeledComparison, index: int) -> list[Datum]:
            return [renderer.to_datum(labeled, max_length), renderer.to_datum(labeled.swap(), max_length)]

        def one(labeled: LabeledComparison, index: int) -> list[Datum]:
            flip = random.Random(index).random() < 0.5
            return [renderer.to_datum(labeled.swap() if flip else labeled, max_length)]

        per_batch = self.common_config.batch_size // 2 if self.both_orders else self.common_config.batch_size
        train_set = comparison_supervised_dataset(train, per_batch, both if self.both_orders else one)
        if test is None or not self.include_test_set:
            return train_set, None
        return train_set, comparison_supervised_dataset(test, len(test), both)
