"""The bundled server: `python -m server_stub` as a child process of this interpreter.

The embedded default needs no setup: `connect()` starts one loopback server per process on a
free port, waits until it answers `/api/v1/healthz`, and stops it when the interpreter exits. A recipe
can launch it earlier (`prestart_shared_local_server`), so that it starts up beside the recipe's imports.
Checkpoints go to a per-user storage dir (`~/.cache/cookbook-server`, or
$COOKBOOK_SERVER_STORAGE) so they survive between runs. Tests start their own servers with
`LocalServer` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from cookbook.client.errors import CookbookError
from cookbook.client.http.settings import requested_base_url

STORAGE_ENV_VAR = "COOKBOOK_SERVER_STORAGE"
DEFAULT_STARTUP_TIMEOUT_S = 180.0
# The line `python -m server_stub` prints once its socket accepts connections.
_READY_RE = re.compile(r"listening on https?://\S+?:(\d+)")


class LocalServerError(CookbookError):
    """The bundled server could not be started (the message holds the end of its log)."""


def default_storage_dir() -> Path:
    """$COOKBOOK_SERVER_STORAGE, else ~/.cache/cookbook-server."""
    configured = os.environ.get(STORAGE_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cookbook-server"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, max_lines: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-max_lines:]) or "(empty log)"


class LocalServer:
    """One `python -m server_stub` child process on a loopback port."""

    def __init__(
        self,
        storage_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    ):
        self.storage_dir = Path(storage_dir) if storage_dir is not None else default_storage_dir()
        self.host = host
        self.port = port
        self.api_key = api_key
        self.extra_args = list(extra_args or [])
        self.env = env
        self.startup_timeout_s = startup_timeout_s
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._healthy = False  # it answered /healthz since it was last launched
        self._lock = threading.Lock()
        _live_servers.add(self)

    @property
    def url(self) -> str:
        if self.port is None:
            raise LocalServerError("the local server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self, port: int) -> list[str]:
        key_args = ["--api-key", self.api_key] if self.api_key else []
        # --exit-with-parent: the child stops itself if we die without cleanup (SIGKILL).
        return [
            sys.executable,
            "-m",
            "server_stub",
            "--host",
            self.host,
            "--port",
            str(port),
            "--storage",
            str(self.storage_dir),
            "--exit-with-parent",
            str(os.getpid()),
            *key_args,
            *self.extra_args,
        ]

    # -- start / stop -------------------------------------------------------------------------

    def launch(self) -> LocalServer:
        """Start the child without waiting for it (no-op when it runs); `start` waits until it is healthy.

        The first launch asks for port 0 and `start` reads the port the server announces, so there
        is no race for a free port; restarts reuse that port, so clients keep their URL.
        """
        with self._lock:
            self._launch()
            return self

    def start(self) -> LocalServer:
        """Launch the child unless it runs, and wait until it is healthy (no-op when it already is)."""
        with self._lock:
            if self._healthy and self.running:
                return self
            self._launch()
            self._wait_healthy(time.monotonic() + self.startup_timeout_s)
            self._healthy = True
            return self

    def _launch(self) -> None:
        if self.running:
            return
        self._healthy = False
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        fd, log_name = tempfile.mkstemp(prefix="cookbook-server-", suffix=".log")
        self.log_path = Path(log_name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        with os.fdopen(fd, "wb") as log:
            self._process = subprocess.Popen(
                self.command(self.port or 0),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def _fail(self, reason: str) -> LocalServerError:
        error = LocalServerError(
            f"{reason} ({' '.join(self.command(self.port or 0))}); end of its log "
            f"{self.log_path}:\n{self.log_tail()}"
        )
        self.stop(remove_log=False)
        return error

    def _check_alive(self, deadline: float) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            raise self._fail(f"the local server exited with code {code} while starting")
        if time.monotonic() > deadline:
            raise self._fail(f"the local server was not ready within {self.startup_timeout_s:.0f} s")

    def _wait_healthy(self, deadline: float) -> None:
        while self.port is None:
            self._check_alive(deadline)
            found = _READY_RE.search(self.log_tail(max_lines=200))
            if found:
                self.port = int(found.group(1))
            else:
                time.sleep(0.05)
        headers = {}
        api_key = (
            self.api_key or (self.env or {}).get("COOKBOOK_API_KEY") or os.environ.get("COOKBOOK_API_KEY")
        )
        if api_key:
            headers["X-API-Key"] = api_key
        with httpx.Client(timeout=5.0, headers=headers) as client:
            while True:
                self._check_alive(deadline)
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/api/v1/healthz").status_code == 200:
                        return
                time.sleep(0.1)

    def stop(self, timeout_s: float = 10.0, remove_log: bool = True) -> None:
        """Terminate the child (kill it if it does not exit within `timeout_s`)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if remove_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def restart(self) -> LocalServer:
        """Stop and start again on the same port and storage dir."""
        self.stop()
        return self.start()

    def log_tail(self, max_lines: int = 40) -> str:
        return _tail(self.log_path, max_lines) if self.log_path is not None else "(not started)"

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# Every server this process started is stopped at exit, even one a test forgot.
_live_servers: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        server.stop()


_shared: LocalServer | None = None
_shared_lock = threading.Lock()


def shared_local_server(storage_dir: str | Path | None = None) -> LocalServer:
    """This process's bundled server, started on first use and reused afterwards."""
    return _shared_server(storage_dir).start()


def prestart_shared_local_server(recipe_args: Sequence[str]) -> None:
    """Launch this process's bundled server now, without waiting, if a recipe run with `recipe_args`
    (its key=value arguments) will use it: no base URL asked for, by a `base_url=` argument or a variable.

    A recipe calls this before its heavy imports, so that the server's own start-up (importing torch
    and transformers, about 2 s) runs beside them; `shared_local_server` then only waits for it."""
    given = next((arg.partition("=")[2] for arg in recipe_args if arg.startswith("base_url=")), None)
    if requested_base_url(given) is not None:
        return
    _shared_server(None).launch()


def _shared_server(storage_dir: str | Path | None) -> LocalServer:
    global _shared
    with _shared_lock:
        wanted = Path(storage_dir) if storage_dir is not None else default_storage_dir()
        if _shared is not None and _shared.storage_dir != wanted:
            raise LocalServerError(
                f"the bundled server already runs with storage {_shared.storage_dir}; "
                f"cannot also use {wanted} in this process"
            )
        if _shared is None:
            _shared = LocalServer(wanted)
        return _shared
