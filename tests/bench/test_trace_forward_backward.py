"""bench/trace_forward_backward.py runs and finds the loss at the end of the traced path (no count is asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_trace_reaches_the_loss_through_client_and_server_files() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.trace_forward_backward", "--repeats", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.search(
        r"path to the loss: \d+ files \(\d+ under cookbook/, \d+ under server_stub/\), \d+ calls", done.stdout
    ), done.stdout
    listed = re.findall(r"^\s+\d+\s+(\S+)$", done.stdout, flags=re.MULTILINE)
    assert "server_stub/training/losses.py" in listed and "cookbook/client/http/training.py" in listed
    assert all(name.startswith(("cookbook/", "server_stub/")) for name in listed)
