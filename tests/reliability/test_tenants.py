"""Keys and tenants: a keys file names one tenant per key; records of who owns a run survive restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server_stub.auth import check_bind_allowed, read_keys_file, tenants_by_key
from server_stub.config import ConfigError
from server_stub.owners import DEFAULT_OWNER, Kind, OwnerRegistry

from .conftest import KEYS, Tenant


def test_a_keys_file_gives_each_key_one_tenant(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team\nalice k1\n\nbob k2  # the intern\n")
    assert read_keys_file(keys) == {"k1": "alice", "k2": "bob"}
    keys.write_text("alice k1\nbob k1\n")
    with pytest.raises(ConfigError, match="only one tenant"):
        read_keys_file(keys)
    keys.write_text("alice\n")
    with pytest.raises(ConfigError, match="TENANT KEY"):
        read_keys_file(keys)
    assert tenants_by_key("solo", None) == {"solo": DEFAULT_OWNER}
    check_bind_allowed("0.0.0.0", None, keys)  # a keys file is a key


def test_a_request_without_a_known_key_is_refused(shared_client: TestClient) -> None:
    assert shared_client.get("/api/v1/healthz").status_code == 401
    assert shared_client.get("/api/v1/healthz", headers={"X-API-Key": "guess"}).status_code == 401
    for tenant in KEYS:
        assert Tenant(tenant, shared_client).request("GET", "/api/v1/healthz").status_code == 200


def test_owner_records_of_runs_and_published_paths_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "owners.json"
    owners = OwnerRegistry(path, run_exists=lambda run: False)
    owners.record(Kind.RUN, "run-a", "alice")
    owners.record(Kind.SAMPLER, "sampler-a", "alice")
    assert owners.set_published("tinker://run-a/weights/ck", True)
    again = OwnerRegistry(path, run_exists=lambda run: run == "run-old")
    assert again.owner_of(Kind.RUN, "run-a") == "alice"
    assert again.is_published("tinker://run-a/weights/ck")
    assert again.owner_of(Kind.SAMPLER, "sampler-a") is None  # samplers live as long as the process
    assert again.owner_of(Kind.RUN, "run-old") == DEFAULT_OWNER  # written before owners were recorded
    assert again.foreign(Kind.RUN, "run-a", "bob") and not again.foreign(Kind.RUN, "run-new", "bob")
