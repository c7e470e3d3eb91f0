"""Supervised datasets from rows of conversations: the shared path of every chat dataset.

`conversation_to_datum` renders one conversation with the run's renderer (the same one RL and
evaluation sample with) and turns it into a Datum; `SupervisedDatasetFromHFDataset` batches and
reshuffles rows; `FromConversationFileBuilder` reads a JSONL file of {"messages": [...]} rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import chz
import datasets
import numpy as np

from cookbook.client.types import Datum
from cookbook.renderers import Message, Renderer, TrainOnWhat
from cookbook.supervised.common import NoTrainedTokensError, Reduction, datum_from_model_input_weights
from cookbook.supervised.sources import DataSourceError, load_rows
from cookbook.supervised.types import ChatDatasetBuilder, SupervisedDataset

logger = logging.getLogger(__name__)

Row = dict[str, Any]
MAX_RENDERED_ROWS = 20_000
"""The most rows whose Datums a data set keeps between epochs (rendering a row again costs more CPU
than keeping it); a larger set would hold too much memory, so its rows are rendered every epoch."""


def conversation_to_datum(
    messages: Sequence[Message],
    renderer: Renderer,
    max_length: int | None,
    train_on_what: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    reduction: Reduction = "mean",
) -> Datum:
    """One conversation as a training Datum (raises NoTrainedTokensError if nothing is trained)."""
    model_input, weights = renderer.build_supervised_example(messages, train_on_what)
    return datum_from_model_input_weights(model_input, weights, max_length=max_length, reduction=reduction)


class SupervisedDatasetFromHFDataset(SupervisedDataset):
    """Fixed-size batches of rows mapped to Datums; batch i holds rows [i*bs, (i+1)*bs).

    `map_fn` turns a row into one Datum; `flatmap_fn` into any number (0 drops the row, so a
    batch may then hold fewer than `batch_size` Datums). A trailing partial batch is dropped.
    `set_epoch(seed)` reorders the rows by a permutation that depends only on `seed` (the one
    `datasets.Dataset.shuffle(seed=seed)` applies). A data set of at most `MAX_RENDERED_ROWS` rows
    keeps each row's Datums once made, so later epochs reuse them instead of rendering again.
    """

    def __init__(
        self,
        hf_dataset: datasets.Dataset | Sequence[Row],
        batch_size: int,
        map_fn: Callable[[Row], Datum] | None = None,
        flatmap_fn: Callable[[Row], list[Datum]] | None = None,
    ):
        if (map_fn is None) == (flatmap_fn is None):
            raise ValueError("give exactly one of map_fn and flatmap_fn")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not isinstance(hf_dataset, datasets.Dataset):
            hf_dataset = datasets.Dataset.from_list(list(hf_dataset))
        self.hf_dataset = hf_dataset
        self.batch_size = batch_size
        self._flatmap: Callable[[Row], list[Datum]] = flatmap_fn or (lambda row: [map_fn(row)])  # type: ignore[misc]
        self._order: list[int] | None = None  # row ids in this epoch's order; None: as stored
        self._rendered: dict[int, list[Datum]] | None = {} if len(hf_dataset) <= MAX_RENDERED_ROWS else None

    def __len__(self) -> int:
        return len(self.hf_dataset) // self.batch_size

    def get_batch(self, index: int) -> list[Datum]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range: the dataset has {len(self)} batches")
        start = index * self.batch_size
        stop = start + self.batch_size
        row_ids = list(range(start, stop)) if self._order is None else self._order[start:stop]
        rendered = self._rendered if self._rendered is not None else {}
        missing = [row_id for row_id in row_ids if row_id not in rendered]
        if missing:
            columns = self.hf_dataset[missing]  # one Arrow-to-Python conversion per batch
            rows = (dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True))
            for row_id, row in zip(missing, rows, strict=True):
                rendered[row_id] = self._flatmap(row)
        return [datum for row_id in row_ids for datum in rendered[row_id]]

    def set_epoch(self, seed: int = 0) -> None:
        self._order = np.random.default_rng(seed).permutation(len(self.hf_dataset)).tolist()


def skip_untrainable(map_fn: Callable[[Row], Datum]) -> Callable[[Row], list[Datum]]:
    """A flatmap_fn that drops rows with no trained token left (e.g. a prompt longer than
    max_length) instead of failing the run; each dropped row is logged."""

    def flatmap(row: Row) -> list[Datum]:
        try:
            return [map_fn(row)]
        except NoTrainedTokensError as exc:
            logger.warning("skipping a row with nothing to train: %s", exc)
            return []

    return flatmap


def conversation_flatmap_fn(
    renderer: Renderer,
    max_length: int | None,
    train_on_what: TrainOnWhat,
    reduction: Reduction = "mean",
    messages_key: str = "messages",
) -> Callable[[Row], list[Datum]]:
    """The flatmap_fn of chat datasets: a row's `messages` column through `conversation_to_datum`."""

    def map_fn(row: Row) -> Datum:
        if messages_key not in row:
            raise DataSourceError(f"row has no {messages_key!r} column (columns: {sorted(row)})")
        # Arrow gives every message the union of all messages' keys, absent ones as None.
        messages = [{k: v for k, v in m.items() if v is not None} for m in row[messages_key]]
        return conversation_to_datum(messages, renderer, max_length, train_on_what, reduction)

    return skip_untrainable(map_fn)


@chz.chz
class FromConversationFileBuilder(ChatDatasetBuilder):
    """Conversations from a JSONL (or JSON / Parquet) file of rows with a `messages` column.

    The rows are shuffled with `shuffle_seed`; the first `test_size` become the test set (one
    batch), the rest the training set.
    """

    file_path: str
    test_size: int = 0
    shuffle_seed: int = 0

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        rows = load_rows(self.file_path, "train").shuffle(seed=self.shuffle_seed)
        if not 0 <= self.test_size < len(rows):
            raise ValueError(
                f"test_size must be in [0, {len(rows)}) for {self.file_path}, got {self.test_size}"
            )
        cfg = self.common_config
        flatmap = conversation_flatmap_fn(
            self.renderer, cfg.max_length, cfg.train_on_what or TrainOnWhat.ALL_ASSISTANT_MESSAGES
        )
        train = SupervisedDatasetFromHFDataset(
            rows.select(range(self.test_size, len(rows))), cfg.batch_size, flatmap_fn=flatmap
        )
        if self.test_size == 0:
            return train, None
        test = SupervisedDatasetFromHFDataset(
            rows.select(range(self.test_size)), self.test_size, flatmap_fn=flatmap
        )
        return train, test


__all__ = [
    "DataSourceError",
    "FromConversationFileBuilder",
    "SupervisedDatasetFromHFDataset",
    "conversation_flatmap_fn",
    "conversation_to_datum",
    "load_rows",
    "skip_untrainable",
]
