"""Checkpoint directories: atomic writes, lookup by tinker path, listing, TTL and deletion.

A checkpoint is written into a hidden temp directory beside its final place and renamed into
place only when complete, so a failed save leaves any existing checkpoint of that name intact and
readers never see a partial one. Temp and trash directories a killed server left behind are
removed at start (`sweep_leftovers`; one server per storage dir). A checkpoint holding a symbolic
link is never read, so a planted link cannot lead a load or an export outside the storage dir. Each directory carries `checkpoint.json` (what it is, for which
base model and LoRA shape, when it expires).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cookbook.client import types
from server_stub.engine import ConflictError, NotFoundError, UserError
from server_stub.models.lora_hub import LoraSpec
from server_stub.storage.json_files import metadata_from_json, metadata_to_json, read_json, write_json_atomic
from server_stub.storage.paths import CHECKPOINT_KIND_DIRS, RUNS_DIR, StorageLayout
from server_stub.validation import parse_tinker_path

META_FILE = "checkpoint.json"
LEFTOVER_PREFIXES = (".tmp-", ".trash-")  # a save's work directories; complete ones are renamed away


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """What `checkpoint.json` records about one saved checkpoint."""

    run_id: str
    kind_dir: str  # "weights" (state + optimizer) or "sampler_weights"
    name: str
    base_model: str
    lora: LoraSpec | None  # None: full weights
    created_at: float
    ttl_seconds: int | None = None
    optimizer_step: int | None = None
    has_optimizer: bool = False
    size_bytes: int | None = None
    reward_head: bool = False  # the model had a reward head (in REWARD_HEAD_WEIGHTS)

    @property
    def tinker_path(self) -> str:
        return f"{types.TINKER_SCHEME}{self.run_id}/{self.kind_dir}/{self.name}"

    @property
    def checkpoint_id(self) -> str:
        return f"{self.kind_dir}/{self.name}"

    @property
    def expires_at(self) -> float | None:
        return None if self.ttl_seconds is None else self.created_at + self.ttl_seconds

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def to_wire(self) -> types.Checkpoint:
        expires = self.expires_at
        return types.Checkpoint(
            checkpoint_id=self.checkpoint_id,
            checkpoint_type=CHECKPOINT_KIND_DIRS[self.kind_dir],
            time=_utc(self.created_at),
            tinker_path=self.tinker_path,
            size_bytes=self.size_bytes,
            public=False,
            expires_at=None if expires is None else _utc(expires),
        )

    @property
    def is_lora(self) -> bool:
        return self.lora is not None

    def weights_info(self) -> types.WeightsInfoResponse:
        lora = self.lora
        return types.WeightsInfoResponse(
            base_model=self.base_model,
            is_lora=lora is not None,
            lora_rank=lora.rank if lora else None,
            train_unembed=lora.train_unembed if lora else None,
            train_mlp=lora.train_mlp if lora else None,
            train_attn=lora.train_attn if lora else None,
            reward_head=True if self.reward_head else None,
        )


def _dir_size(path: Path) -> int:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _holds_link(directory: Path) -> bool:
    return any(path.is_symlink() for path in directory.rglob("*"))


class CheckpointStore:
    """Checkpoint directories of every run under one storage layout."""

    def __init__(self, layout: StorageLayout):
        self.layout = layout

    def _read_meta(self, directory: Path) -> CheckpointMeta | None:
        if (directory / META_FILE).is_symlink():
            return None
        payload = read_json(directory / META_FILE)
        return None if payload is None else metadata_from_json(CheckpointMeta, payload)

    def save(self, meta: CheckpointMeta, write: Callable[[Path], None], overwrite: bool) -> CheckpointMeta:
        """Write with `write(tmp_dir)`, then move into place; ConflictError if it exists and not overwrite."""
        final = self.layout.checkpoint_dir(meta.run_id, meta.kind_dir, meta.name)
        existing = self._read_meta(final) if final.exists() else None
        if final.exists() and not overwrite and (existing is None or not existing.expired()):
            raise ConflictError(
                f"checkpoint {meta.tinker_path} already exists (pass overwrite=True to replace it)",
                field="path",
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            write(tmp)
            meta = dataclasses.replace(meta, size_bytes=_dir_size(tmp))
            write_json_atomic(tmp / META_FILE, metadata_to_json(meta))
            if final.exists():
                trash = final.parent / f".trash-{uuid.uuid4().hex}"
                final.rename(trash)
                tmp.rename(final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return meta

    def get(self, tinker_path: str, field: str = "path") -> tuple[CheckpointMeta, Path]:
        """The metadata and directory of a live checkpoint; NotFoundError if missing or expired."""
        parsed = parse_tinker_path(tinker_path, field=field)
        kind_dir = parsed.checkpoint_id.split("/", 1)[0]
        directory = self.layout.checkpoint_dir(parsed.training_run_id, kind_dir, parsed.name)
        meta = self._read_meta(directory) if directory.is_dir() else None
        if meta is None:
            raise NotFoundError(f"checkpoint {tinker_path} not found", field=field)
        if meta.expired():
            raise NotFoundError(f"checkpoint {tinker_path} expired", field=field)
        if _holds_link(directory):
            raise UserError(f"checkpoint {tinker_path} holds a symbolic link; it is not read", field=field)
        return meta, directory

    def list(self, run_id: str) -> list[CheckpointMeta]:
        """Live checkpoints of a run, oldest first."""
        found: list[CheckpointMeta] = []
        for kind_dir in CHECKPOINT_KIND_DIRS:
            parent = self.layout.kind_dir(run_id, kind_dir)
            if not parent.is_dir():
                continue
            for child in parent.iterdir():
                if child.name.startswith(".") or child.is_symlink() or not child.is_dir():
                    continue
                meta = self._read_meta(child)
                if meta is not None and not meta.expired():
                    found.append(meta)
        return sorted(found, key=lambda m: (m.created_at, m.checkpoint_id))

    def delete(self, run_id: str, checkpoint_id: str) -> None:
        kind_dir, _, name = checkpoint_id.partition("/")
        if not name:
            raise UserError(
                f"checkpoint id must be <weights|sampler_weights>/<name>, got {checkpoint_id!r}",
                field="checkpoint_id",
            )
        directory = self.layout.checkpoint_dir(run_id, kind_dir, name)
        if not (directory / META_FILE).is_file():
            raise NotFoundError(f"checkpoint {run_id}/{checkpoint_id} not found", field="checkpoint_id")
        trash = directory.parent / f".trash-{uuid.uuid4().hex}"
        directory.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def sweep_expired(self, run_id: str) -> None:
        """Delete a run's expired checkpoints (called from the compute thread, e.g. on save)."""
        for kind_dir in CHECKPOINT_KIND_DIRS:
            parent = self.layout.kind_dir(run_id, kind_dir)
            if not parent.is_dir():
                continue
            for child in list(parent.iterdir()):
                meta = None if child.name.startswith(".") or child.is_symlink() else self._read_meta(child)
                if meta is not None and meta.expired():
                    self.delete(run_id, meta.checkpoint_id)

    def kind_dirs(self) -> list[Path]:
        """Every run's weights/ and sampler_weights/ directory that exists (symlinks skipped)."""
        runs = self.layout.root / RUNS_DIR
        found = []
        for run in sorted(runs.iterdir()) if runs.is_dir() else []:
            for kind_dir in CHECKPOINT_KIND_DIRS:
                parent = run / kind_dir
                if not run.is_symlink() and parent.is_dir() and not parent.is_symlink():
                    found.append(parent)
        return found

    def sweep_leftovers(self) -> int:
        """Remove the temp and trash directories of saves a killed server left; how many went."""
        removed = 0
        for parent in self.kind_dirs():
            for child in list(parent.iterdir()):
                if child.name.startswith(LEFTOVER_PREFIXES) and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                    removed += 1
        return removed

    def sweep_all_expired(self) -> None:
        """Delete every run's expired checkpoints, so a TTL frees disk even for runs no longer trained."""
        for parent in self.kind_dirs():
            self.sweep_expired(parent.parent.name)
