"""The bundled-server helper: storage location, ports, and clear errors when the child fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cookbook.client.local_server import LocalServer, LocalServerError, default_storage_dir, free_port


def test_default_storage_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("COOKBOOK_SERVER_STORAGE", raising=False)
    assert default_storage_dir() == Path.home() / ".cache" / "cookbook-server"
    monkeypatch.setenv("COOKBOOK_SERVER_STORAGE", str(tmp_path / "store"))
    assert default_storage_dir() == tmp_path / "store"


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_child_that_dies_gives_an_error_with_its_log(tmp_path: Path) -> None:
    server = LocalServer(tmp_path, extra_args=["--no-such-option-xyz"])
    with pytest.raises(LocalServerError, match="exited with code") as info:
        server.start()
    assert "unrecognized arguments: --no-such-option-xyz" in str(info.value)  # the child's own words
    assert not server.running
    server.stop()  # idempotent


def test_a_child_that_is_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    server = LocalServer(tmp_path, startup_timeout_s=0.2)
    with pytest.raises(LocalServerError, match="not ready within"):
        server.start()
    assert not server.running and server.pid is None


def test_url_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LocalServerError, match="not been started"):
        _ = LocalServer(tmp_path).url
