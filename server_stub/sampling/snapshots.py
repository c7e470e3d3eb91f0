"""Immutable weight snapshots behind sampling clients, with bounded memory.

A snapshot is a copy of a model's trainable tensors (adapter tensors or full weights) taken at
save time; nothing can change it afterwards. Full-weight snapshots are large, so only the most
recently used few stay in memory; older ones are written to a spill directory and read back on
demand, so none is ever lost. Adapter snapshots are small and get a larger resident budget.
A snapshot's spill file goes when the snapshot is discarded; each process spills into its own
`<pid>-<hex>` directory, and directories of processes that died (kill -9) are removed at start.
"""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from server_stub.models.lora_hub import LoraSpec

if TYPE_CHECKING:
    import torch


@dataclass
class Snapshot:
    snapshot_id: str
    base_model: str
    lora: LoraSpec | None
    tensors: dict[str, torch.Tensor] | None  # None while spilled to disk
    spill_file: Path | None = None


class SnapshotStore:
    """All snapshots by id; least recently used ones beyond the resident limits live on disk."""

    def __init__(
        self, spill_root: Path, device: torch.device, max_resident_full: int = 3, max_resident_lora: int = 64
    ):
        self._spill_root = spill_root
        self._device = device
        self._spill_dir: Path | None = None
        self._limits = {False: max_resident_full, True: max_resident_lora}
        self._snapshots: dict[str, Snapshot] = {}
        self._resident: dict[bool, OrderedDict[str, None]] = {False: OrderedDict(), True: OrderedDict()}

    def add(self, base_model: str, lora: LoraSpec | None, tensors: dict[str, torch.Tensor]) -> str:
        """Store tensors the caller will not touch again; returns the new snapshot id."""
        snapshot_id = f"snap-{uuid.uuid4().hex[:16]}"
        self._snapshots[snapshot_id] = Snapshot(snapshot_id, base_model, lora, tensors)
        self._touch(snapshot_id)
        return snapshot_id

    def discard(self, snapshot_id: str) -> None:
        """Forget a snapshot no sampler refers to (e.g. one that failed validation)."""
        snapshot = self._snapshots.pop(snapshot_id)
        self._resident[snapshot.lora is not None].pop(snapshot_id, None)
        if snapshot.spill_file is not None:
            snapshot.spill_file.unlink(missing_ok=True)

    def get(self, snapshot_id: str) -> Snapshot:
        return self._snapshots[snapshot_id]

    def tensors(self, snapshot_id: str) -> dict[str, torch.Tensor]:
        """The snapshot's tensors, read back from disk if it was spilled."""
        snapshot = self._snapshots[snapshot_id]
        if snapshot.tensors is None:
            from safetensors.torch import load_file

            assert snapshot.spill_file is not None
            snapshot.tensors = load_file(str(snapshot.spill_file), device=str(self._device))
        tensors = snapshot.tensors
        self._touch(snapshot_id)
        return tensors

    def is_resident(self, snapshot_id: str) -> bool:
        return self._snapshots[snapshot_id].tensors is not None

    def _touch(self, snapshot_id: str) -> None:
        is_lora = self._snapshots[snapshot_id].lora is not None
        resident = self._resident[is_lora]
        resident[snapshot_id] = None
        resident.move_to_end(snapshot_id)
        while len(resident) > self._limits[is_lora]:
            oldest, _ = resident.popitem(last=False)
            self._spill(self._snapshots[oldest])

    def _spill(self, snapshot: Snapshot) -> None:
        from safetensors.torch import save_file

        if snapshot.spill_file is None:  # snapshots never change, so one write is enough
            path = self._ensure_spill_dir() / f"{snapshot.snapshot_id}.safetensors"
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in (snapshot.tensors or {}).items()}, str(path)
            )
            snapshot.spill_file = path
        snapshot.tensors = None

    def _ensure_spill_dir(self) -> Path:
        if self._spill_dir is None:
            self._spill_root.mkdir(parents=True, exist_ok=True)
            self._spill_dir = self._spill_root / f"{os.getpid()}-{uuid.uuid4().hex}"
            self._spill_dir.mkdir()
            weakref.finalize(self, shutil.rmtree, str(self._spill_dir), True)
        return self._spill_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_dead_spill_dirs(spill_root: Path) -> int:
    """Remove spill directories whose process is gone (or that predate pid-named ones); how many went."""
    if not spill_root.is_dir():
        return 0
    removed = 0
    for child in spill_root.iterdir():
        pid_text = child.name.split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _alive(int(pid_text)):
            continue
        if pid_text.isdigit() and int(pid_text) == os.getpid():
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed += 1
    return removed
