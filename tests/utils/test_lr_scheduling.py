"""compute_schedule_lr_multiplier: exact values of each schedule, warmup, floor, and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cookbook.utils.lr_scheduling import LR_SCHEDULES, compute_schedule_lr_multiplier


def test_linear_is_one_minus_step_over_total() -> None:
    values = [compute_schedule_lr_multiplier("linear", s, 4) for s in range(5)]
    assert values == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_cosine_is_a_half_cosine_to_zero() -> None:
    values = [compute_schedule_lr_multiplier("cosine", s, 4) for s in range(5)]
    expected = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(5)]
    assert values == pytest.approx(expected)
    assert values[0] == 1.0 and values[2] == pytest.approx(0.5) and values[4] == pytest.approx(0.0)


def test_constant_is_one() -> None:
    assert {compute_schedule_lr_multiplier("constant", s, 7) for s in range(8)} == {1.0}


def test_warmup_ramps_then_the_decay_starts_from_one() -> None:
    values = [compute_schedule_lr_multiplier("linear", s, 10, warmup_steps=4) for s in range(11)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4:] == pytest.approx([1 - k / 6 for k in range(7)])
    assert compute_schedule_lr_multiplier("constant", 0, 10, warmup_steps=2) == 0.5


def test_floor_stops_the_decay() -> None:
    assert compute_schedule_lr_multiplier("cosine", 10, 10, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert compute_schedule_lr_multiplier("linear", 5, 10, min_lr_ratio=0.2) == pytest.approx(0.6)
    assert compute_schedule_lr_multiplier("linear", 0, 10, min_lr_ratio=0.2) == 1.0


def test_numpy_ints_are_accepted() -> None:
    assert compute_schedule_lr_multiplier("linear", np.int64(1), np.int64(4)) == 0.75


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr_schedule": "exponential"}, ValueError, "unknown lr_schedule 'exponential'"),
        ({"step": -1}, ValueError, "step must be in"),
        ({"step": 11}, ValueError, "step must be in"),
        ({"total_steps": 0, "step": 0}, ValueError, "total_steps must be at least 1"),
        ({"warmup_steps": 10}, ValueError, "warmup_steps must be in"),
        ({"min_lr_ratio": 1.5}, ValueError, "min_lr_ratio"),
        ({"step": 1.5}, TypeError, "step must be an int"),
        ({"total_steps": True}, TypeError, "total_steps must be an int"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    args: dict[str, object] = {"lr_schedule": "linear", "step": 0, "total_steps": 10, **kwargs}
    with pytest.raises(error, match=message):
        compute_schedule_lr_multiplier(**args)  # type: ignore[arg-type]


def test_every_schedule_starts_at_one_and_stays_in_range() -> None:
    for schedule in LR_SCHEDULES:
        values = [compute_schedule_lr_multiplier(schedule, s, 20) for s in range(21)]  # type: ignore[arg-type]
        assert values[0] == 1.0
        assert all(0.0 <= v <= 1.0 for v in values)
        assert values == sorted(values, reverse=True)
