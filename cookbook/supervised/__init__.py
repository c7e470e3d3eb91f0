"""Supervised learning: chat conversations to weighted Datums, datasets and their builders."""

from cookbook.supervised.common import (
    NoTrainedTokensError,
    Reduction,
    compute_mean_nll,
    datum_from_model_input_weights,
)
from cookbook.supervised.data import (
    FromConversationFileBuilder,
    SupervisedDatasetFromHFDataset,
    conversation_flatmap_fn,
    conversation_to_datum,
    skip_untrainable,
)
from cookbook.supervised.sources import DataSourceError, SplitNotFoundError, load_rows
from cookbook.supervised.types import (
    ChatDatasetBuilder,
    ChatDatasetBuilderCommonConfig,
    SupervisedDataset,
    SupervisedDatasetBuilder,
)

__all__ = [
    "ChatDatasetBuilder",
    "ChatDatasetBuilderCommonConfig",
    "DataSourceError",
    "FromConversationFileBuilder",
    "NoTrainedTokensError",
    "Reduction",
    "SplitNotFoundError",
    "SupervisedDataset",
    "SupervisedDatasetBuilder",
    "SupervisedDatasetFromHFDataset",
    "compute_mean_nll",
    "conversation_flatmap_fn",
    "conversation_to_datum",
    "datum_from_model_input_weights",
    "load_rows",
    "skip_untrainable",
]
