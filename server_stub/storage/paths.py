"""Every path the engine derives from client input goes through here and stays in the storage dir.

Run ids and checkpoint names must pass `validation.check_safe_name` (`types.SAFE_NAME_RE`, no
".."). The joined path is resolved (following symlinks) and must still lie inside the
storage root, so a symlink planted in the tree cannot lead a read, write or delete outside it.
"""

from __future__ import annotations

from pathlib import Path

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.validation import check_safe_name

RUNS_DIR = "runs"
SPILL_DIR = ".spill"
EXPORTS_DIR = ".exports"  # archives being written or downloaded
CHECKPOINT_KIND_DIRS: dict[str, types.CheckpointType] = {"weights": "training", "sampler_weights": "sampler"}


class StorageLayout:
    """Where things live: runs/<run>/{run.json, weights/<name>/, sampler_weights/<name>/}, .spill/, .exports/."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        (self.root / RUNS_DIR).mkdir(exist_ok=True)

    def inside(self, path: Path, what: str) -> Path:
        """`path` resolved; a UserError if it escapes the root (e.g. through a symlink)."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise UserError(f"{what} resolves outside the storage directory", field="path")
        return resolved

    def run_dir(self, run_id: str) -> Path:
        check_safe_name(run_id, "run_id")
        return self.inside(self.root / RUNS_DIR / run_id, f"run {run_id!r}")

    def kind_dir(self, run_id: str, kind_dir: str) -> Path:
        if kind_dir not in CHECKPOINT_KIND_DIRS:
            raise UserError(
                f"checkpoint kind must be one of {sorted(CHECKPOINT_KIND_DIRS)}, got {kind_dir!r}",
                field="checkpoint_id",
            )
        return self.inside(self.run_dir(run_id) / kind_dir, f"{run_id}/{kind_dir}")

    def checkpoint_dir(self, run_id: str, kind_dir: str, name: str) -> Path:
        check_safe_name(name, "name")
        return self.inside(self.kind_dir(run_id, kind_dir) / name, f"checkpoint {run_id}/{kind_dir}/{name}")

    def spill_root(self) -> Path:
        return self.inside(self.root / SPILL_DIR, "spill directory")

    def exports_root(self) -> Path:
        return self.inside(self.root / EXPORTS_DIR, "exports directory")
