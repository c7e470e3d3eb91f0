"""connect() with no URL starts the bundled server, reuses it, and stops it at interpreter exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

SCRIPT = """
import json
from cookbook.client import connect
from cookbook.client.local_server import shared_local_server
first, second = connect(), connect()
models = [m.model_name for m in first.get_server_capabilities().supported_models]
print(json.dumps({"urls": [first.base_url, second.base_url], "pid": shared_local_server().pid,
                  "models": models}))
"""


def test_connect_starts_reuses_and_stops_the_bundled_server(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    env = {
        **os.environ,
        "COOKBOOK_SERVER_STORAGE": str(storage),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    for name in ("COOKBOOK_BASE_URL", "TINKER_BASE_URL", "COOKBOOK_API_KEY", "TINKER_API_KEY"):
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True, timeout=600
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    first, second = report["urls"]
    assert first == second and first.startswith("http://127.0.0.1:")
    assert "tiny-llama" in report["models"]
    assert storage.is_dir()
    # The interpreter is gone, and its atexit hook took the server with it.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first}/api/v1/healthz", timeout=5)
    with pytest.raises(ProcessLookupError):
        os.kill(report["pid"], 0)
