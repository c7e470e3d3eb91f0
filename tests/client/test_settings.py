"""Where the client finds its server and key: arguments, then COOKBOOK_*, then TINKER_*."""

from __future__ import annotations

import pytest

from cookbook.client import HttpServiceClient
from cookbook.client.http.settings import normalize_base_url, resolve_api_key, resolve_base_url


def test_base_url_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOKBOOK_BASE_URL", "http://env-cookbook:1")
    assert HttpServiceClient("http://arg:2").base_url == "http://arg:2"


def test_base_url_from_cookbook_env_then_tinker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_BASE_URL", "http://env-tinker:3/")
    assert HttpServiceClient().base_url == "http://env-tinker:3"
    monkeypatch.setenv("COOKBOOK_BASE_URL", "http://env-cookbook:1")
    assert HttpServiceClient().base_url == "http://env-cookbook:1"


def test_missing_base_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="COOKBOOK_BASE_URL"):
        HttpServiceClient()


def test_api_key_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_api_key() is None
    monkeypatch.setenv("TINKER_API_KEY", "tml-tinker")
    assert resolve_api_key() == "tml-tinker"
    monkeypatch.setenv("COOKBOOK_API_KEY", "cookbook-key")
    assert resolve_api_key() == "cookbook-key"
    assert resolve_api_key("explicit") == "explicit"


def test_base_url_normalisation() -> None:
    assert normalize_base_url("http://h:1/api/v1/") == "http://h:1"
    assert resolve_base_url(" https://h ") == "https://h"
    with pytest.raises(ValueError, match="http"):
        normalize_base_url("h:1")
