"""The pipeline bench's load gauge times a real reference step in a child with passive OpenMP waits."""

from __future__ import annotations

import math

from bench import bench_rlhf_pipeline as bench


def test_the_gauge_times_a_training_step_in_a_child() -> None:
    ms = bench.reference_step_ms()
    assert math.isfinite(ms) and ms > 0.0
