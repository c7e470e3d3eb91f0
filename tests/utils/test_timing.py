"""timed / StepClock: time/<name> metrics."""

from __future__ import annotations

import time

import pytest

from cookbook.utils.timing import StepClock, timed, timed_total


def test_timed_records_and_accumulates_seconds() -> None:
    metrics: dict[str, float] = {}
    with timed("sample", metrics):
        time.sleep(0.02)
    first = metrics["time/sample"]
    assert first >= 0.02
    with timed("sample", metrics):
        time.sleep(0.01)
    assert metrics["time/sample"] >= first + 0.01
    assert set(metrics) == {"time/sample"}


def test_timed_records_even_when_the_block_raises() -> None:
    metrics: dict[str, float] = {}
    with pytest.raises(KeyError), timed("step", metrics):
        raise KeyError("boom")
    assert metrics["time/step"] >= 0.0


def test_timed_wants_a_bare_name() -> None:
    with pytest.raises(ValueError, match="bare name"), timed("time/step", {}):
        pass
    with pytest.raises(ValueError, match="bare name"), timed("", {}):
        pass


def test_total_time_of_a_step() -> None:
    metrics: dict[str, float] = {}
    with timed_total(metrics) as clock:
        time.sleep(0.01)
        assert clock.elapsed() >= 0.01
    assert metrics["time/total"] >= 0.01
    clock2 = StepClock()
    time.sleep(0.01)
    assert clock2.record_total(metrics) == metrics["time/total"] >= 0.01
