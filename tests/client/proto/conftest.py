"""The two official SDK versions the binary wire is checked against (see official_sdk.py)."""

from __future__ import annotations

import pytest

from .official_sdk import INSTALLED_VERSION, NEWEST_VERSION, OfficialSdk, official_sdk


@pytest.fixture(scope="session")
def sdk_newest() -> OfficialSdk:
    """tinker 0.38.0 in its pinned environment (made on first use; a failed pip install fails the tests)."""
    return official_sdk(NEWEST_VERSION)


@pytest.fixture(scope="session")
def sdk_installed() -> OfficialSdk:
    return official_sdk(INSTALLED_VERSION)


@pytest.fixture(scope="session", params=[INSTALLED_VERSION, NEWEST_VERSION])
def sdk(request: pytest.FixtureRequest) -> OfficialSdk:
    """Each official SDK version in turn."""
    return request.getfixturevalue("sdk_installed" if request.param == INSTALLED_VERSION else "sdk_newest")
