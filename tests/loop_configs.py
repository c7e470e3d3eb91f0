"""Build a loop's config from flat keyword settings, the optimizer's ones going into its `optimizer`.

Tests name settings such as `learning_rate=1e-3` next to `max_steps=10`; the loops nest the
optimizer's fields. The loop's own optimizer defaults (RL's constant schedule) are kept.
"""

from __future__ import annotations

from typing import Any, TypeVar

import chz

from cookbook.utils.optimizer_config import OptimizerConfig
from cookbook.utils.run_config import RunConfig

ConfigT = TypeVar("ConfigT", bound=RunConfig)

OPTIMIZER_FIELDS = frozenset(chz.chz_fields(OptimizerConfig))


def make_loop_config(config_class: type[ConfigT], **settings: Any) -> ConfigT:
    """`config_class(**settings)`, with the optimizer's fields among `settings` set on its default optimizer."""
    optimizer = {key: settings.pop(key) for key in list(settings) if key in OPTIMIZER_FIELDS}
    config = config_class(**settings)
    if not optimizer:
        return config
    return chz.replace(config, optimizer=chz.replace(config.optimizer, **optimizer))
