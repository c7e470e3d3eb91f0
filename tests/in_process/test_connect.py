"""`connect("inprocess://...")`: the URL's flags, one shared server per set of flags, and lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cookbook.client import connect
from cookbook.client.connection import is_in_process
from cookbook.client.in_process import InProcessServiceClient, shared_in_process_server
from cookbook.client.in_process.server import server_args


def test_the_query_holds_server_flags() -> None:
    assert server_args("inprocess://") == ()
    assert server_args("inprocess:///?storage=/tmp/x&sample_batch_rows=4&sample-batch-window-seconds=0") == (
        "--storage",
        "/tmp/x",
        "--sample-batch-rows",
        "4",
        "--sample-batch-window-seconds",
        "0",
    )
    for bad in ("inprocess://host", "inprocess://?storage=/x#frag", "http://localhost:8000"):
        with pytest.raises(ValueError, match="in-process URL"):
            server_args(bad)
    with pytest.raises(ValueError, match="refuses these settings"):
        shared_in_process_server("inprocess://?no_such_flag=1")
    with pytest.raises(ValueError, match="refuses these settings"):
        shared_in_process_server("inprocess://?sample_batch_rows=0")


def test_connect_shares_one_server_per_set_of_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"inprocess://?storage={tmp_path}"
    first, second = connect(url), connect(url, api_key="ignored", timeout=5)
    assert isinstance(first, InProcessServiceClient) and isinstance(second, InProcessServiceClient)
    assert first.server is second.server and first.server.config.storage_dir == tmp_path
    first.close()  # the server stays up for the other clients
    assert second.get_server_capabilities().supported_models[0].model_name == "tiny-llama"
    monkeypatch.setenv("COOKBOOK_BASE_URL", url)
    assert is_in_process() and connect().server is first.server  # type: ignore[attr-defined]
    assert not is_in_process("http://127.0.0.1:1") and is_in_process("INPROCESS://")


def test_importing_the_client_loads_neither_torch_nor_the_server() -> None:
    probe = (
        "import sys, cookbook, cookbook.client, cookbook.client.connection; from cookbook.client import connect; "
        "print(sorted(m for m in ('torch', 'server_stub') if m in sys.modules)); "
        "import cookbook.client.in_process; print('server_stub' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True"]
