"""What an SFT loop consumes: datasets of Datum batches, and the chz builders that make them."""

from __future__ import annotations

from abc import ABC, abstractmethod

import chz

from cookbook.client.types import Datum
from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.tokenizer_utils import Tokenizer, find_tokenizer, get_tokenizer


class SupervisedDataset(ABC):
    """Batches of training data, reshuffled per epoch."""

    @abstractmethod
    def get_batch(self, index: int) -> list[Datum]:
        """Batch `index` (0 <= index < len(self)) of the current epoch's order."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of batches in an epoch."""

    @abstractmethod
    def set_epoch(self, seed: int = 0) -> None:
        """Choose the order of the next epoch's batches (deterministic in `seed`)."""


@chz.chz
class SupervisedDatasetBuilder:
    """Config that builds a (train, test | None) pair of datasets."""

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


@chz.chz
class ChatDatasetBuilderCommonConfig:
    """What every chat dataset needs: how to tokenize and render, and how big to make batches.

    `model_name_for_tokenizer` is a base model name the server knows (its tokenizer is fetched
    from `base_url`, or from the bundled local server when that is None) or a local Hugging Face
    directory. `train_on_what=None` lets each dataset pick its natural default.
    """

    model_name_for_tokenizer: str
    renderer_name: str
    max_length: int | None
    batch_size: int
    train_on_what: TrainOnWhat | None = None
    base_url: str | None = None

    @chz.validate
    def _check(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 or None, got {self.max_length}")


@chz.chz
class ChatDatasetBuilder(SupervisedDatasetBuilder):
    """A dataset builder for conversations, with the tokenizer and renderer its config names."""

    common_config: ChatDatasetBuilderCommonConfig

    @property
    def tokenizer(self) -> Tokenizer:
        """Found locally when possible; a server is contacted only to fetch a tokenizer it alone has."""
        name = self.common_config.model_name_for_tokenizer
        local = find_tokenizer(name)
        if local is not None:
            return local
        from cookbook.client.connection import connect

        with connect(self.common_config.base_url) as service_client:
            return get_tokenizer(name, service_client)

    @property
    def renderer(self) -> Renderer:
        return get_renderer(self.common_config.renderer_name, self.tokenizer)
