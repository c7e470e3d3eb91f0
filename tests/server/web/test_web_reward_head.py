"""The reward-head extension through the routes: listed in the capabilities, created by create_model's
`reward_head`, scored in JSON and protobuf alike, and bad calls refused at POST time with a 4xx body
naming the problem (the seq id they carried is released, so the model's next call still runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cookbook.client import proto, types
from server_stub.torch_engine import TorchEngine

from .web_wire import API, PROTOBUF, ce_datum, fwd_bwd, post_ok, proto_fwd_bwd, result

PAIR = [[5, 17, 99, 230], [5, 17, 98]]


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> TorchEngine:
    return TorchEngine(tmp_path_factory.mktemp("storage"), device="cpu")


@pytest.fixture
def real_client(make_client: Callable[..., TestClient], real_engine: TorchEngine) -> TestClient:
    return make_client(real_engine, long_poll_seconds=5.0)


def score_datum(tokens: list[int]) -> dict[str, Any]:
    return {"model_input": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]}, "loss_fn_inputs": {}}


def create(client: TestClient, seq: int, reward_head: bool) -> str:
    body: dict[str, Any] = {"session_id": "rm", "model_seq_id": seq, "base_model": "tiny-llama"}
    body["lora_config"] = {"rank": 4}
    if reward_head:
        body["reward_head"] = True
    future = post_ok(client, "/create_model", body)
    assert result(client, future["request_id"])["model_id"] == future["model_id"]
    return future["model_id"]


def refused(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(API + path, json=body)
    assert response.status_code == 400, response.text
    return response.json()


def test_capabilities_and_get_info_tell_a_client_about_reward_heads(real_client: TestClient) -> None:
    caps = real_client.get(f"{API}/get_server_capabilities").json()
    assert types.EXTENSION_REWARD_HEAD in caps["extensions"]
    with_head, without = create(real_client, 0, True), create(real_client, 1, False)
    assert post_ok(real_client, "/get_info", {"model_id": with_head})["reward_head"] is True
    assert "reward_head" not in post_ok(real_client, "/get_info", {"model_id": without})


def test_bad_reward_calls_are_4xx_naming_the_problem(real_client: TestClient) -> None:
    client = real_client
    plain, rm = create(client, 10, False), create(client, 11, True)
    pairs = [score_datum(t) for t in PAIR]
    body = refused(client, "/forward_backward", fwd_bwd(plain, 1, pairs, "bradley_terry"))
    assert body["field"] == "forward_backward_input.loss_fn" and "has none" in body["error"]
    body = refused(
        client,
        "/forward",
        {"model_id": plain, "seq_id": 2, "forward_input": {"data": pairs[:1], "loss_fn": "reward_score"}},
    )
    assert body["field"] == "forward_input.loss_fn" and "reward_head=true" in body["error"]
    body = refused(
        client, "/forward_backward", fwd_bwd(rm, 1, [*pairs, score_datum(PAIR[0])], "bradley_terry")
    )
    assert body["field"] == "forward_backward_input.data" and "no rejected side" in body["error"]
    body = refused(client, "/forward_backward", fwd_bwd(rm, 2, [ce_datum(t) for t in PAIR], "bradley_terry"))
    assert body["field"].startswith("forward_backward_input.data.0.loss_fn_inputs")
    body = refused(client, "/forward_backward", fwd_bwd(rm, 3, pairs, "reward_score"))
    assert "send it to forward" in body["error"]
    done = result(
        client, post_ok(client, "/forward_backward", fwd_bwd(rm, 4, pairs, "bradley_terry"))["request_id"]
    )
    assert done["metrics"]["pairs:sum"] == 1


def test_scores_travel_as_protobuf_like_json(real_client: TestClient, tmp_path: Path) -> None:
    client = real_client
    rm = create(client, 20, True)
    pairs = [score_datum(t) for t in PAIR]
    post_ok(client, "/forward_backward", fwd_bwd(rm, 1, pairs, "bradley_terry"))
    result(
        client,
        post_ok(client, "/optim_step", {"model_id": rm, "seq_id": 2, "adam_params": {"learning_rate": 0.05}})[
            "request_id"
        ],
    )
    as_json = result(
        client,
        post_ok(
            client,
            "/forward",
            {"model_id": rm, "seq_id": 3, "forward_input": {"data": pairs, "loss_fn": "reward_score"}},
        )["request_id"],
    )
    json_scores = [o[types.REWARD_SCORE_OUTPUT]["data"][0] for o in as_json["loss_fn_outputs"]]
    assert json_scores[0] != json_scores[1]
    response = client.post(
        API + "/forward_backward",
        content=proto_fwd_bwd(rm, 4, pairs, "reward_score", forward_only=True),
        headers={"content-type": PROTOBUF},
    )
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    for _ in range(400):
        answer = client.post(
            API + "/retrieve_future", json={"request_id": request_id}, headers={"accept": PROTOBUF}
        )
        if answer.headers["content-type"].startswith(PROTOBUF):
            break
    output = proto.forward_backward_output_from_proto(answer.content)
    assert [o[types.REWARD_SCORE_OUTPUT].data[0] for o in output.loss_fn_outputs] == pytest.approx(
        json_scores
    )
