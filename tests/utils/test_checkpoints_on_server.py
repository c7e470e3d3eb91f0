"""save_checkpoint against the real server: the paths it records resume a training client.

The unit tests in test_checkpoint_records.py pin down the client side of the boundary with a
recording fake; this one runs the whole path on the built-in tiny model. It needs the server's
compute engine, and is skipped (with the reason shown) in a tree that does not have it yet.
"""

from __future__ import annotations

from pathlib import Path

from cookbook.client.abstract import ServiceClient
from cookbook.client.types import ParsedCheckpointTinkerPath
from cookbook.utils.checkpoints import get_last_checkpoint, load_checkpoints_file, save_checkpoint


def test_recorded_checkpoint_resumes_a_training_client(service: ServiceClient, tmp_path: Path) -> None:
    base_model = service.get_server_capabilities().supported_models[0].model_name
    assert base_model is not None
    training_client = service.create_lora_training_client(base_model, rank=4)

    paths = save_checkpoint(training_client, "000002", tmp_path, {"batch": 2, "epoch": 0}, kind="both")
    save_checkpoint(training_client, "000003", tmp_path, {"batch": 3, "epoch": 0}, kind="sampler")

    assert ParsedCheckpointTinkerPath.from_tinker_path(paths["state_path"]).checkpoint_type == "training"
    assert ParsedCheckpointTinkerPath.from_tinker_path(paths["sampler_path"]).checkpoint_type == "sampler"
    assert [r.name for r in load_checkpoints_file(tmp_path)] == ["000002", "000003"]
    record = get_last_checkpoint(tmp_path)
    assert record is not None and record.name == "000002" and record.state_path == paths["state_path"]

    resumed = service.create_training_client_from_state_with_optimizer(record.state_path)
    assert resumed.get_info().lora_rank == 4
    assert service.weights_info(record.state_path).base_model == base_model
