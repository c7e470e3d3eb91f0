"""What SDK 0.38 added beyond the 0.24 wire (fake engine): session finish, training models created by
load_weights, optimizer_config, and the sequence ids of sample futures."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .web_fake_engine import BASE_MODEL, FakeEngine
from .web_wire import API, ce_datum, fwd_bwd, new_model, new_sampler, optim, post_ok, result, sample_body


def _session(client: TestClient) -> str:
    return post_ok(client, "/create_session", {"sdk_version": "0.38.0"})["session_id"]


def test_finishing_a_session_keeps_its_first_reason_and_ends_new_work(client: TestClient) -> None:
    session = _session(client)
    finished = post_ok(
        client, f"/sessions/{session}/finish", {"reason": {"type": "success"}, "detail": "training complete"}
    )
    assert finished == {"session_id": session, "reason": {"type": "success"}, "detail": "training complete"}
    again = post_ok(client, f"/sessions/{session}/finish", {"reason": {"type": "errored"}, "detail": None})
    assert again["reason"] == {"type": "success"}  # first wins
    unknown = client.post(f"{API}/sessions/session-nope/finish", json={"reason": {"type": "success"}})
    assert unknown.status_code == 404 and unknown.json()["field"] == "session_id"
    refused = client.post(
        f"{API}/create_model", json={"session_id": session, "model_seq_id": 0, "base_model": BASE_MODEL}
    )
    assert refused.status_code == 400 and "finished (success)" in refused.json()["error"]
    sampler = client.post(
        f"{API}/create_sampling_session",
        json={"session_id": session, "sampling_session_seq_id": 0, "base_model": BASE_MODEL},
    )
    assert sampler.status_code == 400 and sampler.json()["field"] == "session_id"
    assert post_ok(client, "/session_heartbeat", {"session_id": session}) == {"type": "session_heartbeat"}


def test_create_model_takes_the_adamw_optimizer_config_only(client: TestClient) -> None:
    body = {
        "session_id": "s",
        "model_seq_id": 0,
        "base_model": BASE_MODEL,
        "optimizer_config": {"type": "adamw"},
    }
    assert result(client, post_ok(client, "/create_model", body)["request_id"])["type"] == "create_model"
    other = client.post(
        f"{API}/create_model", json={**body, "model_seq_id": 1, "optimizer_config": {"type": "dimuon"}}
    )
    assert other.status_code == 400 and other.json()["field"] == "optimizer_config.type"
    assert "adamw" in other.json()["error"]


def _checkpoint(client: TestClient, engine: FakeEngine) -> tuple[str, str]:
    """A model trained one step and saved: (its id, the checkpoint path)."""
    model = new_model(client)
    for future in (
        post_ok(client, "/forward_backward", fwd_bwd(model, 1, [ce_datum([1, 2])])),
        post_ok(client, "/optim_step", optim(model, 2, lr=0.5)),
        post_ok(client, "/save_weights", {"model_id": model, "seq_id": 3, "path": "ck"}),
    ):
        answer = result(client, future["request_id"])
    return model, answer["path"]


def test_load_weights_without_a_model_id_creates_the_training_model(
    client: TestClient, engine: FakeEngine
) -> None:
    _, path = _checkpoint(client, engine)
    session = _session(client)
    for model_seq_id, optimizer in ((0, True), (1, False)):
        body = {
            "session_id": session,
            "model_seq_id": model_seq_id,
            "path": path,
            "optimizer": optimizer,
            **({} if optimizer else {"optimizer_config": {"type": "adamw"}}),
        }
        future = post_ok(client, "/load_weights", body)
        model = f"{session}:train:{model_seq_id}"
        assert future["model_id"] == model
        assert post_ok(client, "/load_weights", body) == future  # a retried POST: the same model
        # The model's own calls start at seq id 1, queued behind its creation.
        follow_up = post_ok(client, "/forward_backward", fwd_bwd(model, 1, [ce_datum([3])]))
        assert result(client, future["request_id"]) == {
            "path": path,
            "model_id": model,
            "type": "load_weights",
        }
        assert result(client, follow_up["request_id"])["loss_fn_outputs"][0]["logprobs"]["data"] == [1.0]
        assert engine.models[model].step == (1 if optimizer else 0)
        assert post_ok(client, "/get_info", {"model_id": model})["model_id"] == model
    assert [name for name, model_id, _ in engine.calls if model_id and ":train:" in model_id] == [
        "create_model",
        "load_state",
        "forward_backward",
    ] * 2


def test_load_weights_without_a_model_id_is_checked_before_anything_is_made(
    client: TestClient, engine: FakeEngine
) -> None:
    _, path = _checkpoint(client, engine)
    body = {"session_id": "s2", "model_seq_id": 0, "path": path, "optimizer": False}
    cases = [
        ({**body, "path": "tinker://run-x/weights/nope"}, 404, "path"),
        ({**body, "base_model": "other-base"}, 400, "base_model"),
        ({**body, "optimizer_config": {"type": "sgd"}}, 400, "optimizer_config.type"),
        ({**body, "optimizer": True, "optimizer_config": {"type": "adamw"}}, 400, "optimizer_config"),
        ({"path": path, "optimizer": False}, 400, "model_id"),
    ]
    for request, status, field in cases:
        response = client.post(f"{API}/load_weights", json=request)
        assert (response.status_code, response.json()["field"]) == (status, field), response.text
    assert not [m for m in engine.models if ":train:" in m]


def test_a_model_whose_loading_fails_is_unloaded_and_its_queued_calls_fail(
    client: TestClient, engine: FakeEngine
) -> None:
    _, path = _checkpoint(client, engine)
    engine.checkpoints[path.replace("/ck", "/broken")] = None  # type: ignore[assignment]  # unreadable
    engine.hold()  # so the model's next call is queued before its creation fails
    future = post_ok(
        client,
        "/load_weights",
        {"session_id": "s3", "model_seq_id": 0, "path": path.replace("/ck", "/broken"), "optimizer": False},
    )
    waiting = post_ok(client, "/forward_backward", fwd_bwd(future["model_id"], 1))
    engine.release()
    assert result(client, future["request_id"])["category"] == "server"
    assert "could not be created" in result(client, waiting["request_id"])["error"]
    assert future["model_id"] not in engine.models
    later = client.post(f"{API}/forward_backward", json=fwd_bwd(future["model_id"], 2))
    assert later.status_code == 404


def test_sample_futures_carry_one_sequence_id_per_sample(client: TestClient) -> None:
    model = new_model(client)
    sampler = new_sampler(client, model, 1)
    first = post_ok(client, "/asample", sample_body(sampler, [1], num_samples=3))
    second = post_ok(client, "/asample", sample_body(sampler, [1], num_samples=1))
    ids = first["sample_sequence_ids"] + second["sample_sequence_ids"]
    assert len(first["sample_sequence_ids"]) == 3 and len(set(ids)) == 4
    assert len(result(client, first["request_id"])["sequences"]) == 3
    training_future = post_ok(client, "/forward_backward", fwd_bwd(model, 2))
    assert "sample_sequence_ids" not in training_future
