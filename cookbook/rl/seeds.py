"""Seeds for the branches of a seeded computation: a step, a group, an episode, a turn."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int | None, *path: int) -> int | None:
    """A 32-bit seed for one branch of a seeded computation (`path` = e.g. step, group, env, turn).

    Distinct paths give independent seeds; None stays None (unseeded sampling).
    """
    if seed is None:
        return None
    if seed < 0 or any(p < 0 for p in path):
        raise ValueError(f"seeds and seed paths must be non-negative, got seed={seed}, path={path}")
    return int(np.random.SeedSequence(seed, spawn_key=path).generate_state(1, dtype=np.uint32)[0])
