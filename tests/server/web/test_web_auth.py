"""API keys: who may listen where, and every request checked when a key is set."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server_stub.auth import check_bind_allowed, is_loopback_host
from server_stub.config import ConfigError

from .web_wire import API


def test_every_request_needs_the_key_when_one_is_set(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_key="sekret")
    missing = client.get(f"{API}/healthz")
    assert missing.status_code == 401
    assert missing.json() == {"error": "missing X-API-Key header", "category": "user", "field": "X-API-Key"}
    wrong = client.post(f"{API}/create_session", json={}, headers={"X-API-Key": "guess"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong API key in X-API-Key header"
    assert client.get(f"{API}/nowhere").status_code == 401  # even unknown routes say nothing without the key
    assert client.get(f"{API}/healthz", headers={"X-API-Key": "sekret"}).json() == {"status": "ok"}
    session = client.post(f"{API}/create_session", json={}, headers={"X-API-Key": "sekret"})
    assert session.status_code == 200


def test_without_a_key_any_key_is_accepted(client: TestClient) -> None:
    assert client.get(f"{API}/healthz", headers={"X-API-Key": "tml-anything"}).status_code == 200
    assert client.get(f"{API}/healthz").status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]", "LocalHost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)
    check_bind_allowed(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com", ""])
def test_other_hosts_need_a_key(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError, match="--api-key"):
        check_bind_allowed(host, None)
    check_bind_allowed(host, "sekret")


def test_cli_refuses_a_public_host_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COOKBOOK_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "server_stub", "--host", "0.0.0.0", "--port", "0", "--storage", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "refusing to listen on non-loopback host '0.0.0.0' without an API key" in done.stderr
    assert done.stdout == ""
