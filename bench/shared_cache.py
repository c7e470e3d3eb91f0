"""The download cache outside the repository (~/.cache/rlhf-cookbook) that tests and benches share, one writer at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlhf-cookbook"


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One process at a time fills a given cache entry (two test runs may start together)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
