"""The two official SDK versions the binary wire is checked against (see official_sdk.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .official_sdk import DEFAULT_SITE, NEWEST_VERSION, SITE_ENV_VAR, install_newest, installed_site


@pytest.fixture(scope="session")
def sdk_newest_site() -> Path:
    """tinker 0.38.0's files, installed with pip into a cache directory on first use."""
    site = Path(os.environ.get(SITE_ENV_VAR) or DEFAULT_SITE)
    try:
        return install_newest(site)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"could not pip install tinker=={NEWEST_VERSION}: {exc.stderr[-500:]}")


@pytest.fixture(scope="session")
def sdk_installed_site() -> Path:
    return installed_site()


@pytest.fixture(scope="session", params=["installed", "newest"])
def sdk_site(request: pytest.FixtureRequest) -> Path:
    """Each official SDK version in turn: 0.24.1 (the venv's) and 0.38.0."""
    name = "sdk_installed_site" if request.param == "installed" else "sdk_newest_site"
    return request.getfixturevalue(name)
