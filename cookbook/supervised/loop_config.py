"""The configuration shared by the loops that train over a supervised dataset in epochs (SFT, DPO).

Both take `RunConfig`'s run settings, a dataset builder and a number of epochs; each loop's
`Config` subclasses `SupervisedRunConfig` and adds its own fields.
"""

from __future__ import annotations

import chz

from cookbook.supervised.types import SupervisedDatasetBuilder
from cookbook.utils.run_config import RunConfig, check_at_least


@chz.chz
class SupervisedRunConfig(RunConfig):
    """A run over `dataset_builder`'s training set, `num_epochs` times (capped by `max_steps`)."""

    dataset_builder: SupervisedDatasetBuilder
    num_epochs: int = 1

    @chz.validate
    def _check_epochs(self) -> None:
        check_at_least(self, {"num_epochs": 1})
