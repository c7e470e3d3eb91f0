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


PRESTART_SCRIPT = """
import json, sys
from cookbook.client import connect
from cookbook.client.local_server import prestart_shared_local_server, shared_local_server, _shared_server
prestart_shared_local_server(sys.argv[1:])
report = {"launched": _shared_server(None).pid, "answered_at_once": _shared_server(None).port is not None}
if report["launched"] is not None:  # connect() waits for the server launched above
    report.update(url=connect().base_url, pid=shared_local_server().pid)
print(json.dumps(report))
"""


@pytest.mark.parametrize(
    ("args", "env_url", "prestarts"),
    [
        ([], None, True),
        (["seed=1"], None, True),
        (["base_url=inprocess://"], None, False),
        ([], "inprocess://", False),
    ],
)
def test_prestart_launches_the_bundled_server_only_when_a_run_will_use_it(
    tmp_path: Path, args: list[str], env_url: str | None, prestarts: bool
) -> None:
    env = {
        **os.environ,
        "COOKBOOK_SERVER_STORAGE": str(tmp_path / "storage"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    for name in ("COOKBOOK_BASE_URL", "TINKER_BASE_URL", "COOKBOOK_API_KEY", "TINKER_API_KEY"):
        env.pop(name, None)
    if env_url is not None:
        env["COOKBOOK_BASE_URL"] = env_url
    out = subprocess.run(
        [sys.executable, "-c", PRESTART_SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["answered_at_once"] is False
    if prestarts:  # the server connect() waited for is the one launched before it
        assert report["launched"] is not None and report["launched"] == report["pid"]
        assert report["url"].startswith("http://127.0.0.1:")
    else:
        assert report["launched"] is None
