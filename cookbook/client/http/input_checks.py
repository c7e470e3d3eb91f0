"""Checks on arguments that JSON would silently corrupt, done before anything is sent.

JSON has no NaN or infinity: encoders write them as `null`, and the server would then report
a confusing type error. Catching them here names the datum, key and position instead.
"""

from __future__ import annotations

import math

from cookbook.client import types
from cookbook.client.errors import InvalidInputError


def _first_non_finite(values: list[float] | list[int]) -> int | None:
    # sum() runs in C; it is finite whenever every value is (barring overflow, re-checked below).
    if math.isfinite(sum(values)):
        return None
    return next((i for i, v in enumerate(values) if not math.isfinite(v)), None)


def check_datums_finite(data: list[types.Datum]) -> None:
    """Raise InvalidInputError naming the first NaN/inf in any datum's loss inputs."""
    for d, datum in enumerate(data):
        for key, tensor in datum.loss_fn_inputs.items():
            if tensor.dtype != "float32":
                continue
            bad = _first_non_finite(tensor.data)
            if bad is not None:
                raise InvalidInputError(f"data[{d}].loss_fn_inputs.{key}[{bad}] is {tensor.data[bad]}: "
                                        "loss inputs must be finite numbers")


def check_adam_finite(params: types.AdamParams) -> None:
    for name, value in params.model_dump().items():
        if not math.isfinite(value):
            raise InvalidInputError(f"adam_params.{name} is {value}: it must be a finite number")
