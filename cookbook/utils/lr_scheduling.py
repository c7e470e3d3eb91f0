"""Learning-rate schedules as a multiplier of the base learning rate, one value per step.

Loops compute `lr = base_lr * compute_schedule_lr_multiplier(...)` and send it with each
`optim_step` (the server's optimizer has no schedule of its own). The decay phase counts from the
end of the warmup: with no warmup, "linear" is exactly `1 - step / total_steps` (Tinker's
definition), so the last step of a run still trains with a small non-zero rate.
"""

from __future__ import annotations

import math
import operator
from typing import Literal, get_args

LRSchedule = Literal["linear", "cosine", "constant"]
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)


def _check_int(name: str, value: object) -> int:
    """`value` as an int (numpy ints welcome); bools and floats are refused."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None


def compute_schedule_lr_multiplier(
    lr_schedule: LRSchedule, step: int, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> float:
    """The factor to apply to the base learning rate at `step` (0-based) of `total_steps`.

    - warmup (steps < warmup_steps): linear ramp (step + 1) / warmup_steps, so no step is wasted
      at lr 0 and the last warmup step reaches the full rate;
    - then, with progress p = (step - warmup_steps) / (total_steps - warmup_steps) in [0, 1]:
      "linear" 1 - p; "cosine" (1 + cos(pi p)) / 2; "constant" 1;
    - decays end at `min_lr_ratio` instead of 0 when it is set: floor + (1 - floor) * decay.
    `step == total_steps` is allowed (the value after the last step).
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; expected one of {LR_SCHEDULES}")
    step = _check_int("step", step)
    total_steps = _check_int("total_steps", total_steps)
    warmup_steps = _check_int("warmup_steps", warmup_steps)
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
    if not (isinstance(min_lr_ratio, int | float) and 0.0 <= min_lr_ratio <= 1.0):
        raise ValueError(f"min_lr_ratio must be a number in [0, 1], got {min_lr_ratio!r}")

    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if lr_schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    decay = 1.0 - progress if lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay
