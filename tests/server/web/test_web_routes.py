"""Routes and scheduling through the HTTP surface, with the fake engine at the engine boundary."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cookbook.client import types

from .web_fake_engine import BASE_MODEL, CONTEXT, EXPLODE_TOKEN, POISON_TOKEN, REFUSE_TOKEN, FakeEngine
from .web_wire import (
    API,
    ce_datum,
    fwd_bwd,
    new_model,
    new_sampler,
    optim,
    poll,
    post_ok,
    result,
    sample_body,
)


def test_service_endpoints_answer_wire_types(client: TestClient) -> None:
    assert client.get(f"{API}/healthz").json() == {"status": "ok"}
    config = post_ok(client, "/client/config", {"sdk_version": "0.24.1"})
    assert types.ClientConfigResponse.model_validate(config) == types.ClientConfigResponse()
    assert config["proto_write_fwdbwd"] is False and config["pjwt_auth_enabled"] is False
    assert post_ok(client, "/client/dynamic_config", {"sdk_version": "x"}) == {"refresh_interval_sec": 300}
    assert post_ok(client, "/telemetry", {"events": [{"anything": 1}]}) == {"status": "accepted"}
    caps = client.get(f"{API}/get_server_capabilities").json()
    assert caps == {
        "supported_models": [{"model_name": BASE_MODEL, "max_context_length": CONTEXT}],
        "wire_formats": ["json", "protobuf"],
        "extensions": [
            "/v1/models",
            "/v1/chat/completions",
            types.EXTENSION_CHECKPOINT_ARCHIVE,
            types.EXTENSION_COMPUTE_TIME,
            types.EXTENSION_SAMPLE_BATCH,
            types.EXTENSION_REWARD_HEAD,
        ],
    }
    tok = post_ok(client, "/get_tokenizer", {"model_name": BASE_MODEL})
    assert tok["model_name"] == BASE_MODEL and tok["eos_token"] == "<eos>"


def test_sessions_heartbeat_known_only(client: TestClient) -> None:
    session = post_ok(
        client, "/create_session", {"tags": ["t"], "sdk_version": "0.24.1", "type": "create_session"}
    )
    assert session["session_id"].startswith("session-")
    assert post_ok(client, "/session_heartbeat", {"session_id": session["session_id"]}) == {
        "type": "session_heartbeat"
    }
    unknown = client.post(f"{API}/session_heartbeat", json={"session_id": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "session_id" and "nope" in unknown.json()["error"]


def test_create_model_is_a_future_and_idempotent(client: TestClient, engine: FakeEngine) -> None:
    body = {"session_id": "s1", "model_seq_id": 0, "base_model": BASE_MODEL, "lora_config": {"rank": 8}}
    first = post_ok(client, "/create_model", body)
    assert first["model_id"].startswith("run-") and types.SAFE_NAME_RE.match(first["model_id"])
    assert post_ok(client, "/create_model", body) == first  # retried POST: same model
    assert result(client, first["request_id"]) == {"model_id": first["model_id"], "type": "create_model"}
    other = post_ok(client, "/create_model", {**body, "model_seq_id": 1})
    assert other["model_id"] != first["model_id"]
    result(client, other["request_id"])
    assert [c[0] for c in engine.calls] == ["create_model", "create_model"]
    info = post_ok(client, "/get_info", {"model_id": first["model_id"]})
    assert info["model_id"] == first["model_id"] and info["lora_rank"] == 8


def test_calls_run_in_seq_order_whatever_the_arrival_order(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    third = post_ok(client, "/optim_step", optim(model, 3, lr=0.5))
    second = post_ok(client, "/forward_backward", fwd_bwd(model, 2, [ce_datum([2, 2])]))
    # seq 1 has not arrived: nothing may run, the futures stay pending
    assert poll(client, third["request_id"])["type"] == "try_again"
    assert poll(client, second["request_id"])["type"] == "try_again"
    assert len(engine.calls) == 1
    first = post_ok(client, "/forward_backward", fwd_bwd(model, 1, [ce_datum([1, 1, 1])]))
    assert result(client, third["request_id"]) == {"metrics": {"step": 1.0, "w": -2.5}}
    assert result(client, first["request_id"])["metrics"]["loss:sum"] == 0.0
    assert result(client, second["request_id"])["metrics"]["loss:sum"] == 0.0
    assert [(c[0], c[2]) for c in engine.calls[1:]] == [
        ("forward_backward", 1),
        ("forward_backward", 2),
        ("optim_step", 0.5),
    ]


def test_pipelined_calls_are_accepted_while_busy_and_run_without_being_polled(
    client: TestClient, engine: FakeEngine
) -> None:
    model = new_model(client)
    engine.hold()
    step1 = [
        post_ok(client, "/forward_backward", fwd_bwd(model, 1)),
        post_ok(client, "/optim_step", optim(model, 2, lr=0.5)),
    ]
    engine.wait_for_calls(2)  # create + step 1's forward_backward, now held on the compute thread
    step2 = [
        post_ok(client, "/forward_backward", fwd_bwd(model, 3)),
        post_ok(client, "/optim_step", optim(model, 4)),
    ]
    assert all(f["model_id"] == model for f in step1 + step2)
    engine.release()
    # The compute thread keeps going through the queue with nobody polling.
    calls = engine.wait_for_calls(5)
    assert [c[0] for c in calls[1:]] == ["forward_backward", "optim_step", "forward_backward", "optim_step"]
    outputs = [result(client, f["request_id"]) for f in step1 + step2]
    assert outputs[0]["loss_fn_outputs"][0]["logprobs"]["data"] == [0.0, 0.0, 0.0]
    # step 2's forward saw step 1's update: w = -0.5 * 3 tokens
    assert outputs[2]["loss_fn_outputs"][0]["logprobs"]["data"] == [1.5, 1.5, 1.5]
    assert outputs[3]["metrics"]["step"] == 2


def test_retried_post_returns_the_same_request(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    body = fwd_bwd(model, 1)
    first = post_ok(client, "/forward_backward", body)
    assert post_ok(client, "/forward_backward", body) == first
    result(client, first["request_id"])
    assert post_ok(client, "/forward_backward", body) == first  # also after it ran
    assert [c[0] for c in engine.calls].count("forward_backward") == 1
    clash = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 1, [ce_datum([5])]))
    assert clash.status_code == 409 and clash.json()["field"] == "seq_id"


def test_rejected_request_consumes_its_seq_id(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    bad_values = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 1, [ce_datum([1, 999])]))
    assert bad_values.status_code == 400 and "vocabulary" in bad_values.json()["error"]
    bad_schema = fwd_bwd(model, 2)
    bad_schema["forward_backward_input"]["loss_fn"] = "bogus"
    rejected = client.post(f"{API}/forward_backward", json=bad_schema)
    assert rejected.status_code == 400 and rejected.json()["field"] == "forward_backward_input.loss_fn"
    bad_adam = client.post(f"{API}/optim_step", json=optim(model, 3, lr=-1.0))
    assert bad_adam.status_code == 400
    # seq 1-3 were refused; seq 4 must not wait for them
    fourth = post_ok(client, "/forward_backward", fwd_bwd(model, 4))
    assert "loss_fn_outputs" in result(client, fourth["request_id"])
    # a retry of a refused request gets the same answer, and cannot sneak in later
    again = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 1, [ce_datum([1, 999])]))
    assert again.status_code == 400 and again.json() == bad_values.json()
    late = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 3))
    assert late.status_code == 409


def test_long_poll_answers_try_again_then_the_result(make_client, engine: FakeEngine) -> None:
    client = make_client(long_poll_seconds=0.3)
    model = new_model(client)
    engine.hold()
    future = post_ok(client, "/forward_backward", fwd_bwd(model, 1))
    assert poll(client, future["request_id"]) == {
        "type": "try_again",
        "request_id": future["request_id"],
        "queue_state": "active",
    }
    engine.release()
    answer = result(client, future["request_id"])
    assert types.ForwardBackwardOutput.model_validate(answer).metrics["loss:sum"] == 0.0
    assert poll(client, future["request_id"]) == answer  # re-poll (lost answer) still works
    unknown = client.post(f"{API}/retrieve_future", json={"request_id": "req-missing"})
    assert unknown.status_code == 404 and unknown.json()["field"] == "request_id"


def test_execution_failures_resolve_the_future_and_the_server_keeps_serving(
    client: TestClient, engine: FakeEngine
) -> None:
    model = new_model(client)
    refused = post_ok(client, "/forward_backward", fwd_bwd(model, 1, [ce_datum([REFUSE_TOKEN])]))
    exploded = post_ok(client, "/forward_backward", fwd_bwd(model, 2, [ce_datum([EXPLODE_TOKEN])]))
    fine = post_ok(client, "/forward_backward", fwd_bwd(model, 3))
    user = result(client, refused["request_id"])
    assert user["category"] == "user" and "refuses" in user["error"]
    server = result(client, exploded["request_id"])
    assert server == {"error": "RuntimeError: fake engine exploded", "category": "server"}
    assert "loss_fn_outputs" in result(client, fine["request_id"])


def test_failed_creation_fails_the_models_queued_calls(client: TestClient, engine: FakeEngine) -> None:
    engine.hold()
    future = post_ok(
        client,
        "/create_model",
        {"session_id": "s", "model_seq_id": 0, "base_model": BASE_MODEL, "lora_config": {"rank": 64}},
    )
    queued = post_ok(client, "/forward_backward", fwd_bwd(future["model_id"], 1))  # accepted while creating
    engine.release()
    assert result(client, future["request_id"])["category"] == "user"
    failed = result(client, queued["request_id"])
    assert failed["category"] == "user" and "could not be created" in failed["error"]
    assert client.post(f"{API}/forward_backward", json=fwd_bwd(future["model_id"], 2)).status_code == 404


def test_concurrent_sample_requests_share_one_engine_call(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    sampler = new_sampler(client, model, 1)
    engine.hold()
    blocker = post_ok(client, "/forward_backward", fwd_bwd(model, 2))
    engine.wait_for_calls(3)
    futures = [
        post_ok(client, "/asample", sample_body(sampler, [1, 2], seed=seed, num_samples=2))
        for seed in range(5)
    ]
    poisoned = post_ok(client, "/asample", sample_body(sampler, [POISON_TOKEN]))
    engine.release()
    result(client, blocker["request_id"])
    for seed, future in enumerate(futures):
        answer = types.SampleResponse.model_validate(result(client, future["request_id"]))
        assert [s.tokens[0] for s in answer.sequences] == [seed, seed + 1]
    assert result(client, poisoned["request_id"]) == {"error": "prompt: poisoned prompt", "category": "user"}
    assert [c for c in engine.calls if c[0] == "sample"] == [("sample", None, 6)]
    assert client.app.state.scheduler.sample_batch_sizes[-1] == 6


def test_sampling_batches_interleave_with_training(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    sampler = new_sampler(client, model, 1)
    engine.hold()
    futures = [post_ok(client, "/forward_backward", fwd_bwd(model, 2))]
    engine.wait_for_calls(3)
    futures += [post_ok(client, "/forward_backward", fwd_bwd(model, seq)) for seq in (3, 4)]
    futures += [post_ok(client, "/asample", sample_body(sampler, [1])) for _ in range(2)]
    engine.release()
    for future in futures:
        result(client, future["request_id"])
    assert [c[0] for c in engine.calls[2:]] == [
        "forward_backward",
        "sample",
        "forward_backward",
        "forward_backward",
    ]


def test_unload_runs_after_queued_calls_then_the_model_is_gone(
    client: TestClient, engine: FakeEngine
) -> None:
    model = new_model(client)
    engine.hold()
    queued = [post_ok(client, "/forward_backward", fwd_bwd(model, seq)) for seq in (1, 2)]
    unload = post_ok(client, "/unload_model", {"model_id": model, "type": "unload_model"})
    refused = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 3))
    assert refused.status_code == 404 and "unloaded" in refused.json()["error"]
    engine.release()
    assert result(client, unload["request_id"]) == {"model_id": model, "type": "unload_model"}
    assert all("loss_fn_outputs" in result(client, f["request_id"]) for f in queued)
    assert [c[0] for c in engine.calls] == [
        "create_model",
        "forward_backward",
        "forward_backward",
        "unload_model",
    ]
    assert client.post(f"{API}/get_info", json={"model_id": model}).status_code == 404


def test_checkpoint_routes(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    saved = result(
        client,
        post_ok(client, "/save_weights", {"model_id": model, "seq_id": 1, "path": "ckpt"})["request_id"],
    )
    path = saved["path"]
    assert path == f"tinker://{model}/weights/ckpt"
    again = post_ok(client, "/save_weights", {"model_id": model, "seq_id": 2, "path": "ckpt"})
    assert result(client, again["request_id"])["category"] == "user"  # ConflictError at execution
    loaded = post_ok(
        client, "/load_weights", {"model_id": model, "seq_id": 3, "path": path, "optimizer": True}
    )
    assert result(client, loaded["request_id"]) == {"path": path}
    assert post_ok(client, "/weights_info", {"tinker_path": path})["base_model"] == BASE_MODEL
    run = client.get(f"{API}/training_runs/{model}", params={"access_scope": "owned"})
    assert run.status_code == 200 and run.json()["training_run_id"] == model
    listed = client.get(f"{API}/training_runs/{model}/checkpoints").json()["checkpoints"]
    assert [c["tinker_path"] for c in listed] == [path]
    assert client.delete(f"{API}/training_runs/{model}/checkpoints/weights/ckpt").status_code == 204
    gone = client.delete(f"{API}/training_runs/{model}/checkpoints/weights/ckpt")
    assert gone.status_code == 404 and gone.json()["category"] == "user"
    assert client.get(f"{API}/training_runs/run-unknown").status_code == 404


def test_sampling_sessions_from_paths_and_base_models(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    named = post_ok(client, "/save_weights_for_sampler", {"model_id": model, "seq_id": 1, "path": "s1"})
    path = result(client, named["request_id"])["path"]
    body = {"session_id": "s", "sampling_session_seq_id": 0, "model_path": path}
    session = post_ok(client, "/create_sampling_session", body)
    assert post_ok(client, "/create_sampling_session", body) == session  # idempotent
    sampler = session["sampling_session_id"]
    assert client.get(f"{API}/samplers/{sampler}").json() == {
        "sampler_id": sampler,
        "base_model": BASE_MODEL,
        "model_path": path,
    }
    base = post_ok(
        client,
        "/create_sampling_session",
        {"session_id": "s", "sampling_session_seq_id": 1, "base_model": BASE_MODEL},
    )
    assert base["sampling_session_id"] != sampler
    # the older form: sample a checkpoint directly, without a session
    direct = sample_body(sampler, [3])
    del direct["sampling_session_id"]
    direct["model_path"] = path
    assert "sequences" in result(client, post_ok(client, "/asample", direct)["request_id"])
    assert [c[0] for c in engine.calls].count("create_sampler") == 3
