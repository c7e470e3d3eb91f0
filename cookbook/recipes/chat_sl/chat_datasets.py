"""Chat datasets for SFT recipes.

`NoRobotsBuilder` reads conversations in the `HuggingFaceH4/no_robots` schema (columns prompt,
prompt_id, messages [{role, content}], category; splits train / test) from the hub, from a local
file or directory, or from the project's bundled generated chat data (`dataset="bundled"`).
"""

from __future__ import annotations

from typing import Any

import chz
import datasets

from cookbook.renderers import TrainOnWhat
from cookbook.supervised.data import SupervisedDatasetFromHFDataset, conversation_flatmap_fn
from cookbook.supervised.sources import SplitNotFoundError, is_local_file, load_rows
from cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset

BUNDLED = "bundled"


def bundled_chat_rows(split: str) -> list[dict[str, Any]]:
    """The bundled generated chat data (no_robots schema), from `cookbook.data.bundled`."""
    try:
        from cookbook.data.bundled import chat_split
    except ImportError as exc:
        raise RuntimeError(
            "dataset='bundled' needs cookbook.data.bundled.chat_split(split), which is not available "
            f"in this installation ({exc}); pass a hub id or a local file/directory instead"
        ) from exc
    return chat_split(split)


def load_chat_split(dataset: str, split: str) -> datasets.Dataset:
    """A split of a no_robots-schema source: "bundled", a local file/directory, or a hub id."""
    if dataset == BUNDLED:
        return datasets.Dataset.from_list(bundled_chat_rows(split))
    return load_rows(dataset, split)


@chz.chz
class NoRobotsBuilder(ChatDatasetBuilder):
    """NoRobots-style SFT data: the train split shuffled with seed 0, the test split as one batch.

    Trains on `common_config.train_on_what`, else on all assistant messages, with each
    conversation's weights summing to 1 (reduction "mean"). A single local file has no test
    split (test is then None); rows that truncation leaves with nothing to train are skipped.
    """

    dataset: str = "HuggingFaceH4/no_robots"

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        cfg = self.common_config
        flatmap = conversation_flatmap_fn(
            self.renderer,
            cfg.max_length,
            cfg.train_on_what or TrainOnWhat.ALL_ASSISTANT_MESSAGES,
            reduction="mean",
        )
        train_rows = load_chat_split(self.dataset, "train").shuffle(seed=0)
        train = SupervisedDatasetFromHFDataset(train_rows, cfg.batch_size, flatmap_fn=flatmap)
        test_rows = self._test_rows()
        if test_rows is None:
            return train, None
        test = SupervisedDatasetFromHFDataset(
            test_rows, min(cfg.batch_size, len(test_rows)), flatmap_fn=flatmap
        )
        return train, test

    def _test_rows(self) -> datasets.Dataset | None:
        if self.dataset != BUNDLED and is_local_file(self.dataset):
            return None
        try:
            return load_chat_split(self.dataset, "test")
        except SplitNotFoundError:
            return None
