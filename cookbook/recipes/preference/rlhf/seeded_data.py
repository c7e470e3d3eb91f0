"""A pipeline seed that reaches the supervised stages too.

The supervised loop orders each epoch's batches by `set_epoch(epoch)`, and the data sets shuffle
their rows with that number alone, so two runs of the SFT and preference-model stages differ in
nothing but their seed-free data order, which is always the same. Wrapping the builder moves
every epoch to an order that also depends on the pipeline's seed; seed 0 leaves it untouched.
"""

from __future__ import annotations

import chz
import numpy as np

from cookbook.client.types import Datum
from cookbook.supervised.types import SupervisedDataset, SupervisedDatasetBuilder


def epoch_order_seed(seed: int, epoch: int) -> int:
    """The `set_epoch` argument for `epoch` of a run seeded `seed` (the epoch itself for seed 0)."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    if seed == 0:
        return epoch
    return int(np.random.SeedSequence(seed, spawn_key=(epoch,)).generate_state(1, dtype=np.uint32)[0])


class SeededEpochs(SupervisedDataset):
    """`inner` with each epoch's order also chosen by `seed`."""

    def __init__(self, inner: SupervisedDataset, seed: int):
        self.inner = inner
        self.seed = seed

    def get_batch(self, index: int) -> list[Datum]:
        return self.inner.get_batch(index)

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, seed: int = 0) -> None:
        self.inner.set_epoch(epoch_order_seed(self.seed, seed))


@chz.chz
class SeededDatasetBuilder(SupervisedDatasetBuilder):
    """`inner`'s data sets, the training one ordered by `seed` as well (the test set is unchanged)."""

    inner: SupervisedDatasetBuilder
    seed: int = 0

    @chz.validate
    def _check(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        train, test = self.inner()
        return SeededEpochs(train, self.seed), test
