"""No stalled queue: whatever fails on an ordered route, that model's later calls still run.

A model runs its calls in seq_id order, so a call that fails without giving its seq id back would
make every later call wait for ever. Each ordered route of the app (read from the app itself) gets
a body that fails in each way a body can fail (nested past the parser's depth, wrong in its schema,
over the size limit, and an unexpected error while it is checked); the model's next seq id must
then run at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server_stub.engine import ModelLimits
from tests.server.web.web_fake_engine import EXPLODE_TOKEN, FakeEngine

from .fake_app import API, datum, fake_client, fwd_bwd, new_model, ok, result

LIMIT = 64 * 1024


class LimitsFailOnce(FakeEngine):
    """model_limits raises an unexpected error once when armed: a 500 while a call is checked."""

    armed: bool = False

    def model_limits(self, base_model: str) -> ModelLimits:
        if self.armed:
            self.armed = False
            raise RuntimeError("injected failure while checking a call")
        return super().model_limits(base_model)


def deep(model_id: str, seq_id: int) -> bytes:
    return f'{{"model_id": "{model_id}", "seq_id": {seq_id}, "x": {"[" * 1000}{"]" * 1000}}}'.encode()


def wrong_schema(model_id: str, seq_id: int) -> bytes:
    return json.dumps({"model_id": model_id, "seq_id": seq_id, "adam_params": "no", "path": 7}).encode()


def oversized(model_id: str, seq_id: int) -> bytes:
    return json.dumps({"model_id": model_id, "seq_id": seq_id, "pad": "p" * (2 * LIMIT)}).encode()


BAD_BODIES: dict[str, Callable[[str, int], bytes]] = {
    "nested 1000 deep": deep,
    "wrong schema": wrong_schema,
    "over the size limit": oversized,
}


def send(client: TestClient, route: str, body: bytes) -> int:
    return client.post(route, content=body, headers={"content-type": "application/json"}).status_code


def next_call_runs(client: TestClient, model_id: str, seq_id: int) -> None:
    answer = result(client, ok(client, "/forward_backward", fwd_bwd(model_id, seq_id)))
    assert "loss_fn_outputs" in answer, answer


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with fake_client(tmp_path, LimitsFailOnce(), max_request_bytes=LIMIT) as live:
        yield live


def ordered_routes(client: TestClient) -> list[str]:
    routes = list(client.app.state.ordered_routes)
    assert f"{API}/forward_backward" in routes and len(routes) >= 6
    return routes


@pytest.mark.parametrize("failure", list(BAD_BODIES))
def test_a_refused_body_gives_its_seq_id_back_on_every_ordered_route(
    client: TestClient, failure: str
) -> None:
    for route in ordered_routes(client):
        model = new_model(client)
        status = send(client, route, BAD_BODIES[failure](model, 1))
        assert 400 <= status < 500, (route, status)
        next_call_runs(client, model, 2)


def test_an_unexpected_error_while_checking_gives_the_seq_id_back(client: TestClient) -> None:
    engine = client.app.state.engine
    bodies: dict[str, dict[str, Any]] = {
        "/forward": {"forward_input": fwd_bwd("", 0)["forward_backward_input"]},
        "/forward_backward": {"forward_backward_input": fwd_bwd("", 0)["forward_backward_input"]},
        "/optim_step": {"adam_params": {"learning_rate": 0.1}},
        "/save_weights": {"path": "ck"},
        "/save_weights_for_sampler": {"path": "sw"},
        "/load_weights": {"path": "tinker://run-x/weights/ck", "optimizer": False},
    }
    for route in ordered_routes(client):
        model = new_model(client)
        engine.armed = True
        body = {"model_id": model, "seq_id": 1, **bodies[route.removeprefix(API)]}
        response = client.post(route, json=body)
        assert response.status_code == 500 and "injected failure" in response.text, (route, response.text)
        next_call_runs(client, model, 2)


def test_a_call_that_fails_while_it_runs_lets_the_next_one_run(client: TestClient) -> None:
    model = new_model(client)
    failed = result(
        client, ok(client, "/forward_backward", fwd_bwd(model, 1, [datum_starting(EXPLODE_TOKEN)]))
    )
    assert failed["category"] == "server", failed
    next_call_runs(client, model, 2)


def test_deep_json_is_never_a_server_error(client: TestClient) -> None:
    for path, item in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if "post" not in item or "{" in path:
            continue
        response = client.post(path, content=deep("m", 1), headers={"content-type": "application/json"})
        assert response.status_code in (200, 400), (path, response.status_code, response.text)


def datum_starting(token: int) -> dict[str, Any]:
    body = datum(4)
    body["model_input"]["chunks"][0]["tokens"][0] = token
    return body
