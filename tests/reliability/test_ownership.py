"""Two tenants on one server: another tenant's ids answer exactly as ids that do not exist.

Alice creates a session, a model, checkpoints, a sampler and a future; Bob then calls every route
of the app with Alice's ids and with fresh ids of the same shape, and the two answers must be the
same (status and body, ids masked). The route list is read from the app, so a new route without a
row in CALLS fails here. Afterwards Alice's model, checkpoints and sampler still work.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pytest
from fastapi import FastAPI

from .conftest import API, BASE_MODEL, Tenant, create_model_body, fwd_bwd

SEQ = 1000  # far ahead of Alice's own seq ids: a call that slipped through would not run before the check


@dataclass(frozen=True)
class Ids:
    session: str
    model: str
    request: str
    sampler: str

    @property
    def state(self) -> str:
        return f"tinker://{self.model}/weights/ck"

    @property
    def sampler_path(self) -> str:
        return f"tinker://{self.model}/sampler_weights/sw"

    def values(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]


def fresh_ids() -> Ids:
    hex_id = uuid.uuid4().hex
    return Ids(f"session-{hex_id}", f"run-{hex_id}", f"req-{hex_id}", f"sampler-{hex_id}")


Call = tuple[str, str, Any]  # method, url, JSON body (None: none)
CALLS: dict[tuple[str, str], Callable[[Ids, str], list[Call]] | None] = {
    # routes that name no id of anyone: nothing to refuse
    ("GET", "/api/v1/healthz"): None,
    ("POST", "/api/v1/client/config"): None,
    ("POST", "/api/v1/client/dynamic_config"): None,
    ("POST", "/api/v1/telemetry"): None,
    ("POST", "/api/v1/create_session"): None,
    ("GET", "/api/v1/get_server_capabilities"): None,
    ("POST", "/api/v1/get_tokenizer"): None,
    ("GET", "/api/v1/storage_usage"): None,
    ("GET", "/api/v1/compute_time"): None,  # the server's busy seconds per kind, no tenant's ids
    ("GET", "/v1/models"): None,
    # (ids, bob's own session) -> calls
    ("POST", "/api/v1/session_heartbeat"): lambda i, _: [
        ("POST", "/session_heartbeat", {"session_id": i.session})
    ],
    ("POST", "/api/v1/sessions/{session_id}/finish"): lambda i, _: [
        ("POST", f"/sessions/{i.session}/finish", {"reason": {"type": "success"}})
    ],
    ("POST", "/api/v1/create_model"): None,  # a session id is only a name space: see its own test
    ("POST", "/api/v1/get_info"): lambda i, _: [("POST", "/get_info", {"model_id": i.model})],
    ("POST", "/api/v1/forward"): lambda i, _: [
        (
            "POST",
            "/forward",
            {**fwd_bwd(i.model, SEQ), "forward_input": fwd_bwd(i.model, SEQ)["forward_backward_input"]},
        )
    ],
    ("POST", "/api/v1/forward_backward"): lambda i, _: [("POST", "/forward_backward", fwd_bwd(i.model, SEQ))],
    ("POST", "/api/v1/optim_step"): lambda i, _: [
        ("POST", "/optim_step", {"model_id": i.model, "seq_id": SEQ, "adam_params": {"learning_rate": 0.1}})
    ],
    ("POST", "/api/v1/save_weights"): lambda i, _: [
        ("POST", "/save_weights", {"model_id": i.model, "seq_id": SEQ, "path": "ck", "overwrite": True})
    ],
    ("POST", "/api/v1/save_weights_for_sampler"): lambda i, _: [
        ("POST", "/save_weights_for_sampler", {"model_id": i.model, "seq_id": SEQ, "path": "sw2"}),
        ("POST", "/save_weights_for_sampler", {"model_id": i.model, "seq_id": SEQ + 1}),
    ],
    ("POST", "/api/v1/load_weights"): lambda i, own: [
        ("POST", "/load_weights", {"model_id": i.model, "seq_id": SEQ, "path": i.state, "optimizer": True}),
        (
            "POST",
            "/load_weights",
            {"path": i.state, "session_id": own, "model_seq_id": 50, "optimizer": False},
        ),
        ("POST", "/load_weights", {"path": i.state, "session_id": i.session, "model_seq_id": 51}),
    ],
    ("POST", "/api/v1/unload_model"): lambda i, _: [("POST", "/unload_model", {"model_id": i.model})],
    ("POST", "/api/v1/weights_info"): lambda i, _: [
        ("POST", "/weights_info", {"tinker_path": i.state}),
        ("POST", "/weights_info", {"tinker_path": i.sampler_path}),
    ],
    ("GET", "/api/v1/training_runs/{run_id}"): lambda i, _: [("GET", f"/training_runs/{i.model}", None)],
    ("GET", "/api/v1/training_runs/{run_id}/checkpoints"): lambda i, _: [
        ("GET", f"/training_runs/{i.model}/checkpoints", None)
    ],
    ("DELETE", "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}"): lambda i, _: [
        ("DELETE", f"/training_runs/{i.model}/checkpoints/weights/ck", None),
        ("DELETE", f"/training_runs/{i.model}/checkpoints/sampler_weights/sw", None),
    ],
    ("POST", "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}/publish"): lambda i, _: [
        ("POST", f"/training_runs/{i.model}/checkpoints/weights/ck/publish", None)
    ],
    ("DELETE", "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}/publish"): lambda i, _: [
        ("DELETE", f"/training_runs/{i.model}/checkpoints/weights/ck/publish", None)
    ],
    ("GET", "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}/archive"): lambda i, _: [
        ("GET", f"/training_runs/{i.model}/checkpoints/weights/ck/archive", None)
    ],
    ("GET", "/api/v1/checkpoint_downloads/{run_id}/{kind}/{name}/{fmt}.tar"): lambda i, _: [
        (
            "GET",
            f"/checkpoint_downloads/{i.model}/weights/ck/checkpoint.tar?expires=9999999999&signature=00",
            None,
        )
    ],
    ("POST", "/api/v1/create_sampling_session"): lambda i, own: [
        (
            "POST",
            "/create_sampling_session",
            {"session_id": own, "sampling_session_seq_id": 9, "model_path": i.sampler_path},
        )
    ],
    ("GET", "/api/v1/samplers/{sampler_id}"): lambda i, _: [("GET", f"/samplers/{i.sampler}", None)],
    ("POST", "/api/v1/asample"): lambda i, _: [
        ("POST", "/asample", sample(sampling_session_id=i.sampler)),
        ("POST", "/asample", sample(model_path=i.sampler_path)),
    ],
    ("POST", "/api/v1/asample_batch"): lambda i, _: [
        ("POST", "/asample_batch", {"requests": [sample(sampling_session_id=i.sampler)]}),
        ("POST", "/asample_batch", {"requests": [sample(model_path=i.sampler_path)]}),
    ],
    ("POST", "/api/v1/retrieve_future"): lambda i, _: [
        ("POST", "/retrieve_future", {"request_id": i.request})
    ],
    ("POST", "/v1/chat/completions"): lambda i, _: [
        (
            "POST",
            "/chat/completions",
            {"model": i.sampler_path, "messages": [{"role": "user", "content": "hi"}]},
        )
    ],
}


def sample(**target: str) -> dict[str, Any]:
    return {
        **target,
        "num_samples": 1,
        "prompt": {"chunks": [{"tokens": [5, 6, 7], "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 2, "temperature": 0.0},
    }


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its own OpenAPI document."""
    return {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}


@pytest.fixture(scope="module")
def alices(alice: Tenant) -> Ids:
    """Alice's session, trained model, checkpoints ck (state) and sw (sampler), sampler and a future."""
    session = alice.ok("/create_session", {"sdk_version": "test"})["session_id"]
    created = alice.ok("/create_model", create_model_body(session))
    model = alice.result(created)["model_id"]
    alice.result(alice.ok("/forward_backward", fwd_bwd(model, 1)))
    alice.result(alice.ok("/save_weights", {"model_id": model, "seq_id": 2, "path": "ck"}))
    alice.result(alice.ok("/save_weights_for_sampler", {"model_id": model, "seq_id": 3, "path": "sw"}))
    future = alice.ok("/save_weights_for_sampler", {"model_id": model, "seq_id": 4})
    sampler = alice.result(future)["sampling_session_id"]
    return Ids(session, model, future["request_id"], sampler)


def masked(text: str, ids: Ids) -> str:
    for value in sorted(ids.values(), key=len, reverse=True):
        text = text.replace(value, "<ID>")
    return re.sub(r"(session|run|req|sampler|chatcmpl)-[0-9a-f]{32}", "<NEW>", text)


def answer(tenant: Tenant, call: Call, ids: Ids) -> tuple[int, str]:
    method, path, body = call
    prefix = "/v1" if path == "/chat/completions" else API
    response = tenant.request(method, prefix + path, body)
    return response.status_code, masked(response.text, ids)


def test_every_route_of_the_app_has_a_row(shared_app: FastAPI) -> None:
    assert app_routes(shared_app) == set(CALLS)


def test_ids_carry_at_least_122_random_bits(alices: Ids) -> None:
    for value in alices.values():
        assert re.fullmatch(r"[a-z]+-[0-9a-f]{32}", value), value


@pytest.mark.parametrize("route", [key for key, calls in CALLS.items() if calls is not None], ids=" ".join)
def test_another_tenants_ids_answer_as_unknown_ones(
    route: tuple[str, str], alice: Tenant, bob: Tenant, alices: Ids
) -> None:
    own_session = bob.ok("/create_session", {"sdk_version": "test"})["session_id"]
    build = CALLS[route]
    assert build is not None
    unknown = fresh_ids()
    for foreign_call, unknown_call in zip(
        build(alices, own_session), build(unknown, own_session), strict=True
    ):
        foreign = answer(bob, foreign_call, alices)
        assert 400 <= foreign[0] < 500, (foreign_call, foreign)
        assert foreign == answer(bob, unknown_call, unknown), foreign_call
    assert_alice_unharmed(alice, alices)


def assert_alice_unharmed(alice: Tenant, ids: Ids) -> None:
    """Her model still trains in her seq order, her checkpoints are there, her sampler samples."""
    info = alice.ok("/get_info", {"model_id": ids.model})
    assert info["model_id"] == ids.model
    listed = alice.request("GET", f"{API}/training_runs/{ids.model}/checkpoints").json()
    assert {c["checkpoint_id"] for c in listed["checkpoints"]} >= {"weights/ck", "sampler_weights/sw"}
    sampled = alice.result(alice.ok("/asample", sample(sampling_session_id=ids.sampler)))
    assert len(sampled["sequences"]) == 1
    assert alice.ok("/session_heartbeat", {"session_id": ids.session})["type"] == "session_heartbeat"


def test_the_owner_keeps_her_seq_order_after_every_foreign_call(
    alice: Tenant, bob: Tenant, alices: Ids
) -> None:
    """Bob's calls with seq ids of her model took none of them: her next seq id still runs."""
    done = alice.result(alice.ok("/forward_backward", fwd_bwd(alices.model, 5)))
    assert "loss_fn_outputs" in done, done


def test_a_session_id_is_a_name_space_per_tenant(alice: Tenant, bob: Tenant, alices: Ids) -> None:
    """Bob reusing Alice's (session, model_seq_id) gets a model of his own, never hers."""
    created = bob.ok("/create_model", create_model_body(alices.session, 0))
    assert created["model_id"] != alices.model
    bobs_model = bob.result(created)["model_id"]
    assert bob.ok("/get_info", {"model_id": bobs_model})["model_id"] == bobs_model
    assert alice.post("/get_info", {"model_id": bobs_model}).status_code == 404
    bob.result(bob.ok("/unload_model", {"model_id": bobs_model}))


def test_a_published_checkpoint_is_readable_by_all_and_writable_by_its_owner_only(
    alice: Tenant, bob: Tenant, alices: Ids
) -> None:
    publish = f"{API}/training_runs/{alices.model}/checkpoints/weights/ck/publish"
    assert bob.request("POST", publish).status_code == 404
    assert alice.request("POST", publish).status_code == 204
    assert alice.request("POST", publish).status_code == 409  # already public
    listed = alice.request("GET", f"{API}/training_runs/{alices.model}/checkpoints").json()["checkpoints"]
    assert {c["checkpoint_id"]: c["public"] for c in listed}["weights/ck"] is True
    assert bob.ok("/weights_info", {"tinker_path": alices.state})["base_model"] == BASE_MODEL
    own_session = bob.ok("/create_session", {"sdk_version": "test"})["session_id"]
    loaded = bob.ok(
        "/load_weights",
        {"path": alices.state, "session_id": own_session, "model_seq_id": 0, "optimizer": False},
    )
    copy = bob.result(loaded)["model_id"]
    assert bob.ok("/get_info", {"model_id": copy})["model_id"] == copy
    # read-only: Bob can neither delete, overwrite nor unpublish it
    assert (
        bob.request("DELETE", f"{API}/training_runs/{alices.model}/checkpoints/weights/ck").status_code == 404
    )
    assert bob.request("DELETE", publish).status_code == 404
    assert (
        bob.post("/save_weights", {"model_id": alices.model, "seq_id": SEQ, "path": "ck"}).status_code == 404
    )
    assert alice.request("DELETE", publish).status_code == 204
    assert bob.post("/weights_info", {"tinker_path": alices.state}).status_code == 404
    bob.result(bob.ok("/unload_model", {"model_id": copy}))


def test_storage_use_is_reported_per_owner(alice: Tenant, bob: Tenant, alices: Ids) -> None:
    alices_use = alice.request("GET", f"{API}/storage_usage").json()
    assert alices_use["owner"] == "alice" and alices_use["used_bytes"] > 0
    assert alices_use["limit_bytes"] > alices_use["used_bytes"]
    assert bob.request("GET", f"{API}/storage_usage").json()["owner"] == "bob"
