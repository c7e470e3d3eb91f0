"""Training-run metadata (runs/<run_id>/run.json): what a run is, so it outlives the server process."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from cookbook.client import types
from server_stub.engine import ConflictError, NotFoundError
from server_stub.models.lora_hub import LoraSpec
from server_stub.storage.checkpoints import CheckpointStore
from server_stub.storage.json_files import metadata_from_json, metadata_to_json, read_json, write_json_atomic
from server_stub.storage.paths import StorageLayout

RUN_FILE = "run.json"
MODEL_OWNER = "local"


@dataclasses.dataclass
class RunMeta:
    """What run.json records: the model a run trains, its LoRA shape, its owner's metadata."""

    run_id: str
    base_model: str
    lora: LoraSpec | None  # None: full-weight training
    lora_seed: int | None
    created_at: float
    last_request_time: float
    user_metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    reward_head: bool = False


def stringify_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """TrainingRun.user_metadata is str -> str on the wire; other JSON values are kept as JSON text."""
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}


class RunStore:
    """run.json files, plus the TrainingRun view that adds the run's latest checkpoints."""

    def __init__(self, layout: StorageLayout, checkpoints: CheckpointStore):
        self.layout = layout
        self.checkpoints = checkpoints

    def exists(self, run_id: str) -> bool:
        return (self.layout.run_dir(run_id) / RUN_FILE).exists()

    def create(self, meta: RunMeta) -> None:
        run_dir = self.layout.run_dir(meta.run_id)
        if self.exists(meta.run_id):
            raise ConflictError(f"training run {meta.run_id!r} already exists", field="model_id")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.write(meta)

    def write(self, meta: RunMeta) -> None:
        write_json_atomic(self.layout.run_dir(meta.run_id) / RUN_FILE, metadata_to_json(meta))

    def read(self, run_id: str) -> RunMeta:
        payload = read_json(self.layout.run_dir(run_id) / RUN_FILE)
        meta = None if payload is None else metadata_from_json(RunMeta, payload)
        if meta is None:
            raise NotFoundError(f"training run {run_id!r} not found", field="run_id")
        return meta

    def to_wire(self, meta: RunMeta) -> types.TrainingRun:
        checkpoints = self.checkpoints.list(meta.run_id)
        last_state = next((c for c in reversed(checkpoints) if c.kind_dir == "weights"), None)
        last_sampler = next((c for c in reversed(checkpoints) if c.kind_dir == "sampler_weights"), None)
        return types.TrainingRun(
            training_run_id=meta.run_id,
            base_model=meta.base_model,
            model_owner=MODEL_OWNER,
            is_lora=meta.lora is not None,
            lora_rank=meta.lora.rank if meta.lora else None,
            last_request_time=datetime.fromtimestamp(meta.last_request_time, tz=UTC),
            last_checkpoint=last_state.to_wire() if last_state else None,
            last_sampler_checkpoint=last_sampler.to_wire() if last_sampler else None,
            user_metadata=dict(meta.user_metadata),
        )
