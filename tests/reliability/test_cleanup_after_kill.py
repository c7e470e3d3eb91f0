"""Nothing left behind: a server killed (-9) in the middle of saves leaves temp and spill files;
the next server on that storage dir removes them at start and keeps every checkpoint it had
reported saved.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.web.web_server_process import free_port, running_server

API = "/api/v1"


def ok(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(base + API + path, json=body, timeout=60)
    assert response.status_code == 200, (path, response.text)
    return response.json()


def result(base: str, future: dict[str, Any]) -> dict[str, Any]:
    while True:
        answer = ok(base, "/retrieve_future", {"request_id": future["request_id"]})
        if answer.get("type") != "try_again":
            return answer


def save_leftovers(storage: Path) -> list[Path]:
    return [*(storage / "runs").glob("*/*/.tmp-*"), *(storage / "runs").glob("*/*/.trash-*")]


def spill_leftovers(storage: Path) -> list[Path]:
    return list((storage / ".spill").glob("*"))


@pytest.mark.slow
def test_a_restart_after_kill_9_during_saves_removes_leftovers_and_keeps_saved_checkpoints(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "storage"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "server_stub", "--port", str(port), "--storage", str(storage)]
    with open(tmp_path / "killed.log", "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        for _ in range(3000):
            try:
                if httpx.get(base + API + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"session_id": "s", "model_seq_id": 0, "base_model": "tiny-llama", "lora_config": {"rank": 0}}
        model = result(base, ok(base, "/create_model", body))["model_id"]
        saved = [
            result(base, ok(base, "/save_weights", {"model_id": model, "seq_id": 1, "path": "kept"}))["path"]
        ]
        for seq in range(2, 7):  # full-weight snapshots past the resident few are spilled to disk
            result(base, ok(base, "/save_weights_for_sampler", {"model_id": model, "seq_id": seq}))
        weights = storage / "runs" / model / "weights"
        seq = 7
        while not list(weights.glob(".tmp-*")):  # saves keep coming until one is caught mid-write
            ok(
                base,
                "/save_weights",
                {"model_id": model, "seq_id": seq, "path": f"s{seq % 4}", "overwrite": True},
            )
            seq += 1
        server.send_signal(signal.SIGKILL)
        server.wait()
    finally:
        if server.poll() is None:
            server.kill()
    assert save_leftovers(storage) and spill_leftovers(storage), (
        "the kill left a save's temp dir and spill files"
    )
    with running_server(storage) as restarted:
        assert save_leftovers(storage) == [] and spill_leftovers(storage) == []
        for path in saved:
            info = httpx.post(restarted + API + "/weights_info", json={"tinker_path": path}, timeout=60)
            assert info.status_code == 200, info.text
        listed = httpx.get(f"{restarted}{API}/training_runs/{model}/checkpoints", timeout=60).json()
        assert all(not c["checkpoint_id"].split("/")[1].startswith(".") for c in listed["checkpoints"])
