"""Disk used by each owner's checkpoints, and the per-owner quota a save must fit.

Runs live in `<storage>/runs/<run_id>/`; an owner's usage is the size of its runs' directories
(symlinks not followed, so a link planted in the tree is never counted or walked).
"""

from __future__ import annotations

import os
from pathlib import Path

from server_stub.owners import Kind, OwnerRegistry
from server_stub.request_limits import over_limit
from server_stub.storage.paths import RUNS_DIR


def tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:  # removed while we walked
                continue
    return total


class StorageQuota:
    def __init__(self, storage_dir: Path, limit: int, owners: OwnerRegistry) -> None:
        self._runs = storage_dir / RUNS_DIR
        self.limit = limit
        self._owners = owners

    def used(self, owner: str) -> int:
        if not self._runs.is_dir():
            return 0
        return sum(
            tree_bytes(run)
            for run in self._runs.iterdir()
            if not run.is_symlink() and self._owners.owner_of(Kind.RUN, run.name) == owner
        )

    def check(self, owner: str) -> None:
        """Refuse a new save once the owner's checkpoints fill its quota."""
        used = self.used(owner)
        if used >= self.limit:
            raise over_limit(
                "the disk your checkpoints use, in bytes",
                used,
                "max_storage_bytes_per_owner",
                self.limit,
                "path",
            )
