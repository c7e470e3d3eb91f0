"""The official tinker SDK, unmodified, at every version in SDK_ENVIRONMENTS, against a real server.

Each SDK runs the scenario in sdk_scenario.py in its own interpreter; our own client runs the same
scenario on the same server. Every loss and logprob the SDK sees must equal ours: the server gives
every client, whatever its wire (0.24's JSON, 0.38's protobuf), the same numbers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cookbook.client.local_server import LocalServer

from .sdk_environments import API_KEY
from .sdk_scenario import BASE_MODEL, SCORED, SEQUENCES, STATE_NAME

# Both clients ask one server for the same computation: only float32 summation order may differ.
TOLERANCE = {"rel": 1e-5, "abs": 1e-5}


def assert_same_outcome(theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    """Equal summed loss and equal per-datum logprobs (one per target token)."""
    assert theirs["loss"] == pytest.approx(ours["loss"], **TOLERANCE)
    assert [len(row) for row in theirs["logprobs"]] == [len(tokens) - 1 for tokens, _ in SEQUENCES]
    for their_row, our_row in zip(theirs["logprobs"], ours["logprobs"], strict=True):
        assert their_row == pytest.approx(our_row, **TOLERANCE)


def test_server_refuses_a_missing_or_wrong_key(sdk_server: LocalServer) -> None:
    assert httpx.get(f"{sdk_server.url}/api/v1/healthz").status_code == 401
    assert (
        httpx.get(f"{sdk_server.url}/api/v1/healthz", headers={"X-API-Key": "tml-other"}).status_code == 401
    )
    assert httpx.get(f"{sdk_server.url}/api/v1/healthz", headers={"X-API-Key": API_KEY}).status_code == 200


def test_lora_training_client(sdk_report: dict[str, Any]) -> None:
    assert BASE_MODEL in sdk_report["models"]
    assert sdk_report["model_id"].startswith("run-")
    assert sdk_report["training_run_id"] == sdk_report["model_id"]


def test_forward_equals_our_client(sdk_report: dict[str, Any], own_report: dict[str, Any]) -> None:
    assert_same_outcome(sdk_report["forward"], own_report["forward"])


def test_pipelined_steps_equal_our_client(sdk_report: dict[str, Any], own_report: dict[str, Any]) -> None:
    for theirs, ours in zip(sdk_report["steps"], own_report["steps"], strict=True):
        assert_same_outcome(theirs, ours)
    assert_same_outcome(sdk_report["after_steps"], own_report["after_steps"])
    # The first step saw the untrained weights; each optimizer step lowered the loss.
    assert_same_outcome(sdk_report["steps"][0], sdk_report["forward"])
    losses = [
        sdk_report["steps"][0]["loss"],
        sdk_report["steps"][1]["loss"],
        sdk_report["after_steps"]["loss"],
    ]
    assert losses == sorted(losses, reverse=True)


def test_save_state(sdk_report: dict[str, Any]) -> None:
    assert sdk_report["state_path"] == f"tinker://{sdk_report['model_id']}/weights/{STATE_NAME}"


def test_training_client_from_state_with_optimizer_continues_the_run(
    sdk_report: dict[str, Any], own_report: dict[str, Any]
) -> None:
    resumed = sdk_report["resumed_with_optimizer"]
    # The state was saved after step 1: the resumed client's step is step 2, and after it the model
    # is the uninterrupted run's after step 2 (weights and Adam moments both restored).
    assert_same_outcome(resumed["step"], sdk_report["steps"][1])
    assert_same_outcome(resumed["after"], sdk_report["after_steps"])
    assert_same_outcome(resumed["after"], own_report["resumed_with_optimizer"]["after"])


def test_training_client_from_state_without_optimizer_starts_a_fresh_adam(
    sdk_report: dict[str, Any], own_report: dict[str, Any]
) -> None:
    resumed = sdk_report["resumed_without_optimizer"]
    assert_same_outcome(resumed["step"], sdk_report["steps"][1])
    assert_same_outcome(resumed["after"], own_report["resumed_without_optimizer"]["after"])
    # A fresh Adam's first update differs from the restored moments' second one.
    assert resumed["after"]["loss"] != pytest.approx(sdk_report["after_steps"]["loss"], **TOLERANCE)


def test_sampling_with_logprobs_equals_our_client(
    sdk_report: dict[str, Any], own_report: dict[str, Any]
) -> None:
    first, again = sdk_report["samples"]
    assert [s["tokens"] for s in again] == [s["tokens"] for s in first]  # seeded
    assert len(first) == 3
    for theirs, ours in zip(first, own_report["samples"][0], strict=True):
        assert 1 <= len(theirs["tokens"]) <= 6 and theirs["stop_reason"] in ("stop", "length")
        assert len(theirs["logprobs"]) == len(theirs["tokens"])
        assert theirs["tokens"] == ours["tokens"] and theirs["stop_reason"] == ours["stop_reason"]
        assert theirs["logprobs"] == pytest.approx(ours["logprobs"], **TOLERANCE)


def test_compute_logprobs_equals_our_client(sdk_report: dict[str, Any], own_report: dict[str, Any]) -> None:
    theirs, ours = sdk_report["prompt_logprobs"], own_report["prompt_logprobs"]
    assert len(theirs) == len(SCORED) and theirs[0] is None and ours[0] is None
    assert theirs[1:] == pytest.approx(ours[1:], **TOLERANCE)


# How each SDK version ends its session, and whether the server still takes new models under it.
CLOSE_BEHAVIOUR = {
    "0.24.1": ("closed locally", True),  # 0.24 never tells the server
    "0.38.0": ("finished", False),  # 0.38 finishes the session on the server
}


def test_service_client_closed(sdk_report: dict[str, Any], sdk_server: LocalServer) -> None:
    close = sdk_report["close"]
    create = httpx.post(
        f"{sdk_server.url}/api/v1/create_model",
        json={"session_id": close["session_id"], "model_seq_id": 1000, "base_model": BASE_MODEL},
        headers={"X-API-Key": API_KEY},
    )
    assert create.status_code in (200, 400), create.text
    if create.status_code == 400:
        assert "finished" in create.json()["error"]
    assert (close["how"], create.status_code == 200) == CLOSE_BEHAVIOUR[sdk_report["sdk_version"]]
