"""A worker rank killed mid-request fails every caller with a server error; the web layer stays up."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from cookbook.client import types
from cookbook.client.errors import CookbookError
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

from .conftest import STARTUP_TIMEOUT_S
from .test_parity import RESULT_TIMEOUT_S, _datum

POLL_S = 0.05


def _worker_pids(server_pid: int) -> list[int]:
    """The server's child processes: its worker ranks."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_killed_rank_fails_every_pending_call(tmp_path: Path) -> None:
    with LocalServer(tmp_path, extra_args=["--ranks", "2"], startup_timeout_s=STARTUP_TIMEOUT_S) as server:
        assert server.pid is not None
        service = HttpServiceClient(server.url)
        client = service.create_lora_training_client("tiny-llama", rank=0)
        big = [_datum([(i * 13 + k) % 400 + 1 for k in range(200)], 1.0) for i in range(32)]
        client.forward_backward(big[:2], "cross_entropy").result(RESULT_TIMEOUT_S)  # both ranks are live
        pending = [client.forward_backward(big, "cross_entropy") for _ in range(4)]
        pending.append(client.optim_step(types.AdamParams(learning_rate=1e-3)))
        # no pause: the first pass is under way, and a pass this size cannot end before the kill
        for pid in _worker_pids(server.pid):
            os.kill(pid, signal.SIGKILL)
        for future in pending:
            with pytest.raises(CookbookError) as failed:
                future.result(RESULT_TIMEOUT_S)
            assert getattr(failed.value, "category", "server") != "user"
        health = httpx.get(f"{server.url}/api/v1/healthz", timeout=RESULT_TIMEOUT_S)
        assert health.status_code == 503 and "rank" in health.json()["detail"]
        with pytest.raises(CookbookError):  # and it stays failed, at once
            client.forward_backward(big[:1], "cross_entropy").result(RESULT_TIMEOUT_S)
        service.close()
