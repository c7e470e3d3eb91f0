"""A run's optimizer: AdamW's hyperparameters and the learning-rate schedule over the run's steps.

Every loop (SFT, DPO, RL) nests one as `optimizer` (`optimizer.learning_rate=3e-4` on the command
line) and sends `adam_params(step, total_steps)` with each `optim_step`: the server's optimizer has
no schedule of its own. The loops differ only in their defaults, which `optimizer_defaults` declares.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import chz

from cookbook.client.types import AdamParams
from cookbook.utils.lr_scheduling import LR_SCHEDULES, LRSchedule, compute_schedule_lr_multiplier

logger = logging.getLogger(__name__)


@chz.chz
class OptimizerConfig:
    """AdamW with decoupled weight decay, the rate following `lr_schedule` after a linear warm-up."""

    learning_rate: float = 1e-4
    lr_schedule: LRSchedule = "linear"
    lr_warmup_steps: int = 0  # cut to leave one step after it when the run is shorter
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0  # 0 = no clipping

    @chz.validate
    def _check(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")

    def warmup_steps_for(self, total_steps: int) -> int:
        """The warm-up of a run of `total_steps`: `lr_warmup_steps`, cut (with a warning) so that at
        least one step follows it. A continued run stretches its schedule over the new total."""
        warmup = max(0, min(self.lr_warmup_steps, total_steps - 1))
        if warmup < self.lr_warmup_steps:
            _warn_warmup_cut(self.lr_warmup_steps, total_steps, warmup)
        return warmup

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of step `step` (0-based) of a run of `total_steps`."""
        warmup = self.warmup_steps_for(total_steps)
        return self.learning_rate * compute_schedule_lr_multiplier(
            self.lr_schedule, step, total_steps, warmup
        )

    def adam_params(self, step: int, total_steps: int) -> AdamParams:
        """What `optim_step` gets at step `step` of a run of `total_steps`."""
        return AdamParams(
            learning_rate=self.lr_at(step, total_steps),
            beta1=self.adam_beta1,
            beta2=self.adam_beta2,
            eps=self.adam_eps,
            weight_decay=self.weight_decay,
            grad_clip_norm=self.grad_clip_norm,
        )


@functools.cache  # the rate is asked for at every step: warn once per run length
def _warn_warmup_cut(asked: int, total_steps: int, used: int) -> None:
    logger.warning("lr_warmup_steps=%d does not fit in %d steps; warming up for %d", asked, total_steps, used)


def optimizer_defaults(**defaults: Any) -> Any:
    """A config's `optimizer` field whose defaults are `defaults` over OptimizerConfig's.

    The command line keeps them when it sets only some fields (`optimizer.lr_warmup_steps=5`
    leaves this loop's learning rate and schedule as they were).
    """
    make = functools.partial(OptimizerConfig, **defaults)
    return chz.field(default_factory=make, blueprint_unspecified=make)
