"""The binary wire through the routes (fake engine): protobuf forward_backward bodies and protobuf results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from fastapi.testclient import TestClient

from cookbook.client import proto, types
from cookbook.client.proto import schema
from server_stub.training.losses import LOSSES

from .web_fake_engine import REFUSE_TOKEN, FakeEngine
from .web_wire import (
    API,
    PROTOBUF,
    ce_datum,
    fwd_bwd,
    new_model,
    new_sampler,
    optim,
    post_ok,
    post_proto,
    proto_fwd_bwd,
    result,
    rl_datum,
    sample_body,
)

SDK_038_ACCEPT = {"accept": PROTOBUF}
SDK_024_ACCEPT = {"accept": "application/x-protobuf, application/json"}


def fetch(client: TestClient, request_id: str, **headers: str) -> Any:
    """One finished result, as the server answers it for these headers: (content type, body)."""
    result(client, request_id)  # wait until done (JSON)
    response = client.post(f"{API}/retrieve_future", json={"request_id": request_id}, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["content-type"], response.content


def test_protobuf_forward_backward_runs_like_json(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    by_json = post_ok(client, "/forward_backward", fwd_bwd(model, 1, [ce_datum([4, 5, 6])]))
    by_proto = post_proto(client, "/forward_backward", proto_fwd_bwd(model, 2, [ce_datum([4, 5, 6])]))
    assert by_proto["model_id"] == model
    assert (
        result(client, by_proto["request_id"])["loss_fn_outputs"]
        == result(client, by_json["request_id"])["loss_fn_outputs"]
    )
    forward_only = proto_fwd_bwd(model, 3, [ce_datum([7, 8])], forward_only=True)
    post_proto(client, "/forward_backward", forward_only)
    post_proto(client, "/forward", proto_fwd_bwd(model, 4, [ce_datum([9])]))  # the route says forward
    done = post_ok(client, "/optim_step", optim(model, 5))
    result(client, done["request_id"])
    assert [(name, detail) for name, _, detail in engine.calls[1:]] == [
        ("forward_backward", 4),
        ("forward_backward", 4),
        ("forward", 7),
        ("forward", 9),
        ("optim_step", 0.1),
    ]


def test_a_zstd_body_is_read_and_the_client_config_asks_for_it_only_when_set(
    make_client: Callable[..., TestClient],
) -> None:
    plain, compressing = make_client(), make_client(compress_forward_backward=True)
    for client, compress in ((plain, False), (compressing, True)):
        config = post_ok(client, "/client/config", {"sdk_version": "0.38.0"})
        assert config["proto_compress_fwdbwd"] is compress and config["use_pyqwest_transport"] is False
    model = new_model(compressing)
    body = zstandard.ZstdCompressor().compress(proto_fwd_bwd(model, 1, [ce_datum([1, 2])]))
    future = post_proto(compressing, "/forward_backward", body, **{"content-encoding": "zstd"})
    assert len(result(compressing, future["request_id"])["loss_fn_outputs"]) == 1


def test_results_answer_protobuf_when_accept_asks_for_it(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    future = post_proto(client, "/forward_backward", proto_fwd_bwd(model, 1, [ce_datum([1, 2, 3])]))
    as_json = types.ForwardBackwardOutput.model_validate(result(client, future["request_id"]))
    for accept in (SDK_038_ACCEPT, SDK_024_ACCEPT):
        kind, content = fetch(client, future["request_id"], **accept)
        assert kind == PROTOBUF
        assert proto.forward_backward_output_from_proto(content) == as_json
    refused = {"accept": "application/x-protobuf;q=0, application/json"}
    for headers in ({}, {"accept": "application/json"}, refused):
        kind, _ = fetch(client, future["request_id"], **headers)
        assert kind == "application/json"

    step = post_ok(client, "/optim_step", optim(model, 2))
    kind, content = fetch(client, step["request_id"], **SDK_038_ACCEPT)  # no codec: JSON
    assert kind == "application/json" and types.OptimStepResponse.model_validate_json(content).metrics

    sampler = new_sampler(client, model, 3)
    sampled = post_ok(client, "/asample", sample_body(sampler, [1, 2], num_samples=2, max_tokens=3))
    assert len(sampled["sample_sequence_ids"]) == 2
    as_json_sample = types.SampleResponse.model_validate(result(client, sampled["request_id"]))
    kind, content = fetch(client, sampled["request_id"], **SDK_038_ACCEPT)
    assert kind == PROTOBUF and proto.sample_response_from_proto(content) == as_json_sample


def test_try_again_and_failures_stay_json(client: TestClient, engine: FakeEngine) -> None:
    model = new_model(client)
    failing = post_proto(client, "/forward_backward", proto_fwd_bwd(model, 1, [ce_datum([REFUSE_TOKEN])]))
    kind, content = fetch(client, failing["request_id"], **SDK_038_ACCEPT)
    assert kind == "application/json"
    assert types.RequestFailedResponse.model_validate_json(content).category == "user"
    engine.hold()
    pending = post_proto(client, "/forward_backward", proto_fwd_bwd(model, 2))
    waiting = client.post(f"{API}/retrieve_future", json=pending, headers=SDK_038_ACCEPT)
    assert waiting.headers["content-type"] == "application/json" and waiting.json()["type"] == "try_again"
    engine.release()
    assert fetch(client, pending["request_id"], **SDK_038_ACCEPT)[0] == PROTOBUF


def _message_with_configs(model: str, seq: int, legacy: dict[str, float], v2: dict[str, Any]) -> bytes:
    message = schema.ForwardBackwardRequest()
    message.ParseFromString(proto_fwd_bwd(model, seq, [rl_datum([1, 2])], loss_fn="dro"))
    message.loss_fn_config.update(legacy)
    for key, value in v2.items():
        if isinstance(value, str):
            message.loss_fn_config_v2[key].text = value
        else:
            message.loss_fn_config_v2[key].number = value
    return message.SerializeToString()


def test_loss_fn_config_v2_is_read_before_the_legacy_map(client: TestClient) -> None:
    model = new_model(client)
    # The legacy map names a setting dro lacks: accepted, because v2 is present and read instead.
    accepted = _message_with_configs(model, 1, {"bogus": 1.0}, {"beta": 0.1})
    assert "loss_fn_outputs" in result(
        client, post_proto(client, "/forward_backward", accepted)["request_id"]
    )
    legacy_only = _message_with_configs(model, 2, {"beta": 0.2}, {})
    assert "loss_fn_outputs" in result(
        client, post_proto(client, "/forward_backward", legacy_only)["request_id"]
    )
    for seq, v2, fragment in ((3, {"bogus": 1.0}, "not a setting of dro"), (4, {"beta": "high"}, "numeric")):
        refused = client.post(
            f"{API}/forward_backward",
            content=_message_with_configs(model, seq, {"beta": 0.2}, v2),
            headers={"content-type": PROTOBUF},
        )
        assert refused.status_code == 400 and fragment in refused.json()["error"], refused.text


@pytest.mark.parametrize("loss_fn", ["gspo", "stable_reinforce", "custom"])
def test_losses_the_sdk_knows_and_we_lack_are_refused_with_the_list(client: TestClient, loss_fn: str) -> None:
    model = new_model(client)
    supported = f"must be one of {', '.join(LOSSES)}"  # the server's loss table
    json_answer = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 1, loss_fn=loss_fn))
    assert json_answer.status_code == 400
    json_answer = json_answer.json()
    assert json_answer["field"] == "forward_backward_input.loss_fn"
    assert f"{supported}, got {loss_fn!r} (a loss this server does not implement)" in json_answer["error"]
    message = schema.ForwardBackwardRequest()
    message.ParseFromString(proto_fwd_bwd(model, 2))
    message.loss_fn = loss_fn
    proto_answer = client.post(
        f"{API}/forward_backward", content=message.SerializeToString(), headers={"content-type": PROTOBUF}
    )
    assert proto_answer.status_code == 400
    proto_answer = proto_answer.json()
    assert proto_answer["field"] == "loss_fn" and supported in proto_answer["error"]


def test_protobuf_problems_name_their_field(client: TestClient) -> None:
    model = new_model(client)
    message = schema.ForwardBackwardRequest()
    message.ParseFromString(proto_fwd_bwd(model, 1))
    message.data[0].model_input.add().image.data = b"png"
    image = client.post(
        f"{API}/forward_backward", content=message.SerializeToString(), headers={"content-type": PROTOBUF}
    )
    assert image.status_code == 400 and image.json()["field"] == "data[0].model_input[1]"
    unset = schema.ForwardBackwardRequest(loss_fn="cross_entropy")
    unset.data.add().model_input.add().encoded_text.tokens = b"\x01\x00\x00\x00"
    missing = client.post(
        f"{API}/forward_backward", content=unset.SerializeToString(), headers={"content-type": PROTOBUF}
    )
    assert missing.status_code == 400 and missing.json()["field"] == "model_id"
    too_short = proto_fwd_bwd(model, 3, [ce_datum([1, 2, 3, 4])])
    long_weights = schema.ForwardBackwardRequest()
    long_weights.ParseFromString(too_short)
    long_weights.data[0].loss_fn_inputs["weights"].dense += b"\x00\x00\x80\x3f"
    answer = client.post(
        f"{API}/forward_backward",
        content=long_weights.SerializeToString(),
        headers={"content-type": PROTOBUF},
    )
    assert answer.status_code == 400 and answer.json()["field"].startswith("data[0].loss_fn_inputs.weights")
