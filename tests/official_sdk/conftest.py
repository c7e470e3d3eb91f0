"""A real server with an API key, and the scenario's report from each official SDK and from our client."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer

from . import sdk_scenario
from .sdk_environments import API_KEY, SDK_ENVIRONMENTS, sdk_env, sdk_python


@pytest.fixture(scope="session")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("official-sdk-storage"), api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def own_report(sdk_server: LocalServer) -> dict[str, Any]:
    """The scenario as our own client runs it, on the same server."""
    with HttpServiceClient(sdk_server.url, api_key=API_KEY) as service:
        return sdk_scenario.run_scenario(service, types)


@pytest.fixture(scope="session", params=list(SDK_ENVIRONMENTS), ids=lambda version: f"tinker-{version}")
def sdk_report(
    request: pytest.FixtureRequest, sdk_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The scenario as that official SDK runs it, in its own interpreter."""
    version: str = request.param
    out = tmp_path_factory.mktemp(f"tinker-{version}") / "report.json"
    command = [
        str(sdk_python(version)),
        sdk_scenario.__file__,
        "--base-url",
        sdk_server.url,
        "--api-key",
        API_KEY,
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=sdk_env(), cwd=out.parent)
    if done.returncode != 0:
        raise AssertionError(
            f"tinker {version} failed the scenario (exit {done.returncode}):\n{done.stderr[-6000:]}\n"
            f"end of the server's log:\n{sdk_server.log_tail()}"
        )
    report = json.loads(Path(out).read_text())
    assert report["sdk_version"] == version
    return report
