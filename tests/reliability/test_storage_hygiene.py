"""Checkpoint names, symlinks, TTLs, and what a gone session leaves loaded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.torch_engine import TorchEngine
from server_stub.validation import check_safe_name
from tests.server.web.web_fake_engine import BASE_MODEL, FakeEngine

from .fake_app import fake_client, fwd_bwd, new_model, ok, result


@pytest.mark.parametrize("name", ["ok\n", "ok\r", "a/b", "..", ".hidden"])
def test_a_checkpoint_name_must_match_whole(name: str) -> None:
    with pytest.raises(UserError):
        check_safe_name(name, "path")
    assert check_safe_name("ok", "path") == "ok"


@pytest.fixture
def engine_with_checkpoint(tmp_path: Path) -> tuple[TorchEngine, str]:
    engine = TorchEngine(tmp_path / "storage", device="cpu")
    engine.create_model("run-a", "tiny-llama", types.LoraConfig(rank=2), None)
    return engine, engine.save_state("run-a", "ck", overwrite=False, ttl_seconds=None).path


def test_a_symlink_planted_in_a_checkpoint_is_never_followed(
    engine_with_checkpoint: tuple[TorchEngine, str], tmp_path: Path
) -> None:
    engine, path = engine_with_checkpoint
    outside = tmp_path / "secret.safetensors"
    directory = engine.layout.root / "runs" / "run-a" / "weights" / "ck"
    weights = next(p for p in directory.iterdir() if p.suffix == ".safetensors")
    outside.write_bytes(weights.read_bytes())
    weights.unlink()
    weights.symlink_to(outside)
    with pytest.raises(UserError, match="symbolic link"):
        engine.load_state("run-a", path, optimizer=False)
    with pytest.raises(UserError, match="symbolic link"):
        engine.create_sampler(None, path)
    with pytest.raises(UserError, match="symbolic link"):
        engine.export_archive(path, "checkpoint")


def test_an_expired_checkpoint_leaves_the_disk_at_the_next_sweep(
    engine_with_checkpoint: tuple[TorchEngine, str],
) -> None:
    engine, _ = engine_with_checkpoint
    short = engine.save_state("run-a", "short", overwrite=False, ttl_seconds=1).path
    directory = engine.layout.root / "runs" / "run-a" / "weights" / "short"
    assert directory.is_dir() and engine.weights_info(short)
    time.sleep(1.1)  # let the one-second TTL pass
    engine.sweep_storage()
    assert not directory.exists()
    assert (engine.layout.root / "runs" / "run-a" / "weights" / "ck").is_dir()


def test_leftover_save_dirs_go_at_start(engine_with_checkpoint: tuple[TorchEngine, str]) -> None:
    engine, _ = engine_with_checkpoint
    weights = engine.layout.root / "runs" / "run-a" / "weights"
    (weights / ".tmp-abc").mkdir()
    (weights / ".trash-def").mkdir()
    TorchEngine(engine.layout.root, device="cpu")
    assert sorted(p.name for p in weights.iterdir()) == ["ck"]


def test_a_gone_sessions_idle_models_and_samplers_are_unloaded(tmp_path: Path) -> None:
    engine = FakeEngine()
    with fake_client(tmp_path, engine, idle_unload_seconds=0.2) as client:
        gone = ok(client, "/create_session", {"sdk_version": "t"})["session_id"]
        model = new_model(client, gone)
        sampler_body = {"session_id": gone, "sampling_session_seq_id": 0, "base_model": BASE_MODEL}
        sampler = ok(client, "/create_sampling_session", sampler_body)["sampling_session_id"]
        sessionless = new_model(client, "never-issued")
        ok(client, f"/sessions/{gone}/finish", {"reason": {"type": "success"}})
        while not {("unload_model", model), ("release_sampler", sampler)} <= {c[:2] for c in engine.calls}:
            time.sleep(0.05)
        assert client.post("/api/v1/get_info", json={"model_id": model}).status_code == 404
        assert ok(client, "/get_info", {"model_id": sessionless})["model_id"] == sessionless
        assert "loss_fn_outputs" in result(client, ok(client, "/forward_backward", fwd_bwd(sessionless, 1)))
