"""Comparison data sets in the Anthropic/hh-rlhf schema: the real data and the bundled stand-in.

Each hh-rlhf row holds two full transcripts, "chosen" and "rejected", written as
"\\n\\nHuman: ...\\n\\nAssistant: ..." turns. A row is a valid comparison when both transcripts
end with an assistant turn and agree on every turn before it: the shared turns are the prompt,
the two last turns the completions (A = chosen, so the label is always "A"; training swaps
orders). Anything else (transcripts that diverge earlier, a last turn that is not the
assistant's, text before the first turn, a missing field) is malformed and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import chz
import datasets

from cookbook.feedback.builders import FeedbackComparisonBuilder
from cookbook.feedback.store import is_feedback_path
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder
from cookbook.preference.types import Comparison, LabeledComparison
from cookbook.renderers import Message
from cookbook.supervised.sources import SplitNotFoundError, is_local_file, load_rows

BUNDLED = "bundled"
HH_RLHF = "Anthropic/hh-rlhf"
_TURN_RE = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_TRANSCRIPT_COLUMNS = ("chosen", "rejected")


def parse_hh_transcript(text: str) -> list[Message] | None:
    """The turns of an hh-rlhf transcript (contents stripped), or None if it is not one."""
    pieces = _TURN_RE.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        return None
    return [
        {"role": _ROLES[speaker], "content": content.strip()}
        for speaker, content in zip(pieces[1::2], pieces[2::2], strict=True)
    ]


def hh_row_to_comparison(row: dict[str, Any]) -> Comparison | None:
    """Comparison(prompt = the shared turns, A = chosen's last turn, B = rejected's), or None."""
    chosen_text, rejected_text = row.get("chosen"), row.get("rejected")
    if not isinstance(chosen_text, str) or not isinstance(rejected_text, str):
        return None
    chosen, rejected = parse_hh_transcript(chosen_text), parse_hh_transcript(rejected_text)
    if chosen is None or rejected is None:
        return None
    if (
        chosen[-1]["role"] != "assistant"
        or rejected[-1]["role"] != "assistant"
        or chosen[:-1] != rejected[:-1]
    ):
        return None
    return Comparison(chosen[:-1], [chosen[-1]], [rejected[-1]])


def bundled_comparisons_dir() -> str:
    """The directory of the bundled comparisons (train.jsonl, test.jsonl), generated on first use."""
    from cookbook.data.bundled import bundled_dir

    return str(bundled_dir() / "comparisons")


@chz.chz
class HHHComparisonBuilder(ComparisonDatasetBuilder):
    """hh-rlhf comparisons: `dataset` is a hub id, a local file or directory, or "bundled".

    - a hub id or a directory: its "train" and "test" splits (a directory may lack "test");
    - a single local file (e.g. the real harmless-base test file): split in two, the first
      `test_size` rows after a seed-0 shuffle are the test set, the rest the training set;
    - "bundled": the generated comparisons of the embedded default. Their test comparisons are
      tagged with `kind` (which attributes of the two answers differ, judged by the gold rule)
      unless the rows carry a `kind` of their own.
    Train is shuffled with seed 0; test is shuffled with seed 0 and cut to `test_size`. Any
    other string column of a row (e.g. `kind`) becomes a tag of its comparison.
    """

    dataset: str = HH_RLHF
    test_size: int = 1024

    @chz.validate
    def _check(self) -> None:
        if self.test_size < 1:
            raise ValueError(f"test_size must be at least 1, got {self.test_size}")

    @property
    def source(self) -> str:
        return bundled_comparisons_dir() if self.dataset == BUNDLED else self.dataset

    def get_train_and_test_datasets(self) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        source = self.source
        if is_local_file(source):
            rows = load_rows(source, "train").shuffle(seed=0)
            if len(rows) <= self.test_size:
                raise ValueError(
                    f"{source} has {len(rows)} rows, not enough for test_size={self.test_size} "
                    "plus a training set"
                )
            return rows.select(range(self.test_size, len(rows))), rows.select(range(self.test_size))
        train = load_rows(source, "train").shuffle(seed=0)
        try:
            test = load_rows(source, "test").shuffle(seed=0)
        except SplitNotFoundError:
            return train, None
        return train, test.select(range(min(self.test_size, len(test))))

    def example_to_labeled_comparison(self, example: dict[str, Any]) -> LabeledComparison | None:
        comparison = hh_row_to_comparison(example)
        if comparison is None:
            return None
        tags = {
            key: value
            for key, value in example.items()
            if key not in _TRANSCRIPT_COLUMNS and isinstance(value, str)
        }
        return LabeledComparison(comparison, "A", tags)

    def convert_rows(
        self, rows: datasets.Dataset | Sequence[dict[str, Any]], split: str
    ) -> list[LabeledComparison]:
        comparisons = super().convert_rows(rows, split)
        if self.dataset != BUNDLED or split != "test":
            return comparisons
        from cookbook.preference.gold import comparison_kind

        return [
            c
            if c.kind is not None
            else LabeledComparison(c.comparison, c.label, {**c.tags, "kind": comparison_kind(c.comparison)})
            for c in comparisons
        ]


def comparison_builder(dataset: str, test_size: int) -> ComparisonDatasetBuilder:
    """The comparisons a recipe's `comparison_dataset` names: a feedback database (*.sqlite) or hh-rlhf data."""
    if is_feedback_path(dataset):
        return FeedbackComparisonBuilder(db=dataset, test_size=test_size)
    return HHHComparisonBuilder(dataset=dataset, test_size=test_size)
