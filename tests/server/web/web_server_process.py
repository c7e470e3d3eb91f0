"""Start the real server (`python -m server_stub`) as a child process on a free loopback port.

Kept here until the shared helper in cookbook/client/local_server.py covers these tests' needs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 300.0  # a safety net only: importing torch on a busy 2-core machine is slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(storage: Path, *extra_args: str, api_key: str | None = None) -> Iterator[str]:
    """Yield the base URL of a server whose /api/v1/healthz answers; stop it afterwards.

    Also checks the server printed its ready line. Its output goes to server-PORT.log beside `storage`.
    """
    port = free_port()
    log_path = storage.parent / f"server-{port}.log"
    command = [
        sys.executable,
        "-m",
        "server_stub",
        "--port",
        str(port),
        "--storage",
        str(storage),
        *extra_args,
    ]
    if api_key is not None:
        command += ["--api-key", api_key]
    base_url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": api_key} if api_key else {}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{base_url}/api/v1/healthz", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server not healthy after {STARTUP_TIMEOUT}s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        ready_line = f"server_stub listening on {base_url}"
        if ready_line not in log_path.read_text():
            raise RuntimeError(f"server is healthy but never printed {ready_line!r}")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
