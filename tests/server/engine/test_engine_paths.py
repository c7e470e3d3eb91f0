"""Client-supplied names and paths never reach outside the storage directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server_stub.engine import UserError
from server_stub.storage.paths import StorageLayout
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY

BAD_NAMES = ["..", "../x", "a/b", "/etc", ".hidden", "a..b", "", "x" * 200, "-rf", "a\\b", "a b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_checkpoint_names_are_rejected(engine: TorchEngine, name: str) -> None:
    engine.create_model("m", TINY, None, None)
    for call in (
        lambda: engine.save_state("m", name, overwrite=False, ttl_seconds=None),
        lambda: engine.save_sampler_weights("m", name, None),
    ):
        with pytest.raises(UserError, match="is not a valid name") as info:
            call()
        assert info.value.field == "path"


@pytest.mark.parametrize("model_id", BAD_NAMES)
def test_bad_model_ids_are_rejected(engine: TorchEngine, model_id: str) -> None:
    with pytest.raises(UserError, match="is not a valid name") as info:
        engine.create_model(model_id, TINY, None, None)
    assert info.value.field == "model_id"


@pytest.mark.parametrize(
    "path",
    [
        "tinker://../weights/x",
        "tinker://run/weights/../../x",
        "tinker://run/../x",
        "tinker:///etc/passwd",
        "file:///etc/passwd",
        "/etc/passwd",
        "tinker://run/weights/x/y",
        "tinker://run/other/x",
    ],
)
def test_bad_tinker_paths_are_rejected(engine: TorchEngine, path: str) -> None:
    engine.create_model("m", TINY, None, None)
    for call in (
        lambda: engine.weights_info(path),
        lambda: engine.load_state("m", path, optimizer=False),
        lambda: engine.create_sampler(None, path),
    ):
        with pytest.raises(UserError):
            call()


def test_delete_rejects_escapes(engine: TorchEngine) -> None:
    for run_id, checkpoint_id in (
        ("..", "weights/x"),
        ("m", "../weights/x"),
        ("m", "weights/.."),
        ("m", "weights"),
        ("m", "other/x"),
    ):
        with pytest.raises(UserError):
            engine.delete_checkpoint(run_id, checkpoint_id)


def test_symlinks_out_of_the_storage_dir_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "weights" / "ck").mkdir(parents=True)
    (outside / "weights" / "ck" / "checkpoint.json").write_text("{}")
    storage = tmp_path / "storage"
    engine = TorchEngine(storage, device="cpu")
    os.symlink(outside, storage / "runs" / "evil")
    with pytest.raises(UserError, match="outside the storage directory"):
        engine.weights_info("tinker://evil/weights/ck")
    with pytest.raises(UserError, match="outside the storage directory"):
        engine.delete_checkpoint("evil", "weights/ck")
    with pytest.raises(UserError, match="outside the storage directory"):
        engine.list_checkpoints("evil")
    assert (outside / "weights" / "ck" / "checkpoint.json").exists()


def test_layout_paths_stay_inside(tmp_path: Path) -> None:
    layout = StorageLayout(tmp_path / "root")
    path = layout.checkpoint_dir("run-1", "weights", "step:10")
    assert path.is_relative_to(layout.root) and path.name == "step:10"
