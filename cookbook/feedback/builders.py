"""Dataset builders that train on a feedback database, accepted wherever a data set is.

- `FeedbackSFTBuilder`: up-rated answers and people's corrections become chat examples (the SFT
  data of `sft_dataset=feedback.sqlite`).
- `FeedbackComparisonBuilder`: each ranking of N answers gives its ordered pairs (better, worse);
  tied pairs are dropped or kept as "Tie" comparisons (the data of `comparison_dataset=feedback.sqlite`).

Both hold out whole questions for the test split (a seed-0 shuffle of the question ids), so no
question is trained on and tested on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import chz
import datasets

from cookbook.feedback.formats import no_robots_row
from cookbook.feedback.store import FeedbackStore
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder
from cookbook.preference.types import Comparison, LabeledComparison
from cookbook.renderers import TrainOnWhat
from cookbook.supervised.data import SupervisedDatasetFromHFDataset, conversation_flatmap_fn
from cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset

Ties = Literal["drop", "keep"]
_Item = TypeVar("_Item")


def split_by_question(
    items: Sequence[_Item], question_of: Callable[[_Item], int], test_count: int
) -> tuple[list[_Item], list[_Item]]:
    """(train, test): whole questions, in a seed-0 shuffled order, go to test until it holds `test_count` items."""
    questions = sorted({question_of(item) for item in items})
    random.Random(0).shuffle(questions)
    per_question: dict[int, int] = {}
    for item in items:
        per_question[question_of(item)] = per_question.get(question_of(item), 0) + 1
    test_questions: set[int] = set()
    held = 0
    for question in questions:
        if held >= test_count:
            break
        test_questions.add(question)
        held += per_question[question]
    train = [item for item in items if question_of(item) not in test_questions]
    test = [item for item in items if question_of(item) in test_questions]
    return train, test


def _open(db: str) -> FeedbackStore:
    return FeedbackStore.open(db, create=False)


@chz.chz
class FeedbackSFTBuilder(ChatDatasetBuilder):
    """Chat SFT data from a feedback database: up-rated answers and corrections, no_robots rows.

    `test_fraction` of the questions (at least one, when there are two or more) form the test set.
    """

    db: str
    test_fraction: float = 0.1

    @chz.validate
    def _check(self) -> None:
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with _open(self.db) as store:
            examples = store.chat_examples()
        if not examples:
            raise ValueError(
                f"{self.db} holds no up-rated or corrected answers to train on: rate some answers first"
            )
        questions = len({e.question_id for e in examples})
        test_count = 0 if questions < 2 else max(1, round(self.test_fraction * len(examples)))
        train, test = split_by_question(examples, lambda e: e.question_id, test_count)
        return [no_robots_row(e) for e in train], [no_robots_row(e) for e in test]

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        cfg = self.common_config
        flatmap = conversation_flatmap_fn(
            self.renderer,
            cfg.max_length,
            cfg.train_on_what or TrainOnWhat.LAST_ASSISTANT_MESSAGE,
            reduction="mean",
        )
        train_rows, test_rows = self.rows()
        train = SupervisedDatasetFromHFDataset(
            datasets.Dataset.from_list(train_rows).shuffle(seed=0), cfg.batch_size, flatmap_fn=flatmap
        )
        if not test_rows:
            return train, None
        test = SupervisedDatasetFromHFDataset(
            datasets.Dataset.from_list(test_rows), min(cfg.batch_size, len(test_rows)), flatmap_fn=flatmap
        )
        return train, test


@chz.chz
class FeedbackComparisonBuilder(ComparisonDatasetBuilder):
    """Comparisons from a feedback database's rankings: every ordered pair of each ranking.

    `ties="drop"` leaves tied pairs out; `"keep"` keeps them as "Tie" comparisons. The test set
    holds about `test_size` comparisons of questions the training set does not have. Comparisons
    of the bundled data's questions are tagged with the kind of difference the gold rule sees.
    """

    db: str
    test_size: int = 400
    ties: Ties = "drop"

    @chz.validate
    def _check(self) -> None:
        if self.test_size < 1:
            raise ValueError(f"test_size must be at least 1, got {self.test_size}")
        if self.ties not in ("drop", "keep"):
            raise ValueError(f"ties must be 'drop' or 'keep', got {self.ties!r}")

    def get_train_and_test_datasets(self) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        with _open(self.db) as store:
            pairs = store.ranked_pairs(keep_ties=self.ties == "keep")
        rows = [
            {
                "question_id": p.question_id,
                "prompt": p.prompt,
                "chosen": p.chosen,
                "rejected": p.rejected,
                "tie": p.tie,
            }
            for p in pairs
        ]
        train, test = split_by_question(rows, lambda row: row["question_id"], self.test_size)
        if not train:
            raise ValueError(
                f"{self.db} has {len(rows)} ranked pairs, not enough for test_size={self.test_size} "
                "plus a training set"
            )
        return datasets.Dataset.from_list(train), datasets.Dataset.from_list(test) if test else None

    def example_to_labeled_comparison(self, example: dict[str, Any]) -> LabeledComparison | None:
        comparison = Comparison(
            example["prompt"],
            [{"role": "assistant", "content": example["chosen"]}],
            [{"role": "assistant", "content": example["rejected"]}],
        )
        return LabeledComparison(comparison, "Tie" if example["tie"] else "A", _gold_tags(comparison))


def _gold_tags(comparison: Comparison) -> dict[str, str]:
    """{"kind": ...} when the question is one of the bundled tasks (the gold rule can say what differs)."""
    from cookbook.data.gold_judge import UnknownTaskError
    from cookbook.preference.gold import comparison_kind

    try:
        return {"kind": comparison_kind(comparison)}
    except UnknownTaskError:
        return {}
