"""The real engine (built-in tiny model) on the 0.38 wire: protobuf bodies and results give the JSON
wire's numbers, and a training model created by load_weights continues like the uninterrupted run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cookbook.client import proto, types
from cookbook.client.proto import schema
from cookbook.client.proto.tensors import BFLOAT16, INT32, tensor_data_to_proto
from server_stub.torch_engine import TorchEngine

from .web_wire import API, PROTOBUF, fwd_bwd, optim, post_ok, post_proto, proto_fwd_bwd, result

TOKENS = [5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 200, 31]


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> TorchEngine:
    return TorchEngine(tmp_path_factory.mktemp("storage"), device="cpu")


@pytest.fixture
def real(make_client: Callable[..., TestClient], real_engine: TorchEngine) -> TestClient:
    return make_client(real_engine, long_poll_seconds=5.0)


def _datum(shift: int = 0) -> dict[str, Any]:
    tokens = [(t + shift) % 256 for t in TOKENS]
    n = len(tokens) - 1
    return {
        "model_input": {"chunks": [{"tokens": tokens[:-1], "type": "encoded_text"}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": tokens[1:], "dtype": "int64", "shape": [n]},
            "weights": {"data": [1.0] * n, "dtype": "float32", "shape": [n]},
        },
    }


def _model(client: TestClient, model_seq_id: int) -> str:
    body = {"session_id": "real", "model_seq_id": model_seq_id, "base_model": "tiny-llama"}
    created = post_ok(client, "/create_model", {**body, "lora_config": {"rank": 8, "seed": 0}})
    return result(client, created["request_id"])["model_id"]


def _proto_result(client: TestClient, request_id: str) -> types.ForwardBackwardOutput:
    result(client, request_id)
    answer = client.post(
        f"{API}/retrieve_future", json={"request_id": request_id}, headers={"accept": PROTOBUF}
    )
    assert answer.headers["content-type"] == PROTOBUF
    return proto.forward_backward_output_from_proto(answer.content)


def _logprobs(output: dict[str, Any] | types.ForwardBackwardOutput) -> list[list[float]]:
    parsed = types.ForwardBackwardOutput.model_validate(output)
    return [list(map(float, out["logprobs"].data)) for out in parsed.loss_fn_outputs]


def test_protobuf_bodies_and_results_give_the_json_numbers(real: TestClient) -> None:
    data = [_datum(0), _datum(3)]
    by_json, by_proto = _model(real, 0), _model(real, 1)
    json_futures = [
        post_ok(real, "/forward_backward", fwd_bwd(by_json, 1, data)),
        post_ok(real, "/optim_step", optim(by_json, 2, lr=1e-2)),
        post_ok(
            real,
            "/forward",
            {
                "model_id": by_json,
                "seq_id": 3,
                "forward_input": fwd_bwd(by_json, 3, data)["forward_backward_input"],
            },
        ),
    ]
    proto_futures = [
        post_proto(real, "/forward_backward", proto_fwd_bwd(by_proto, 1, data)),
        post_ok(real, "/optim_step", optim(by_proto, 2, lr=1e-2)),
        post_proto(real, "/forward_backward", proto_fwd_bwd(by_proto, 3, data, forward_only=True)),
    ]
    for index in (0, 2):
        as_json = result(real, json_futures[index]["request_id"])
        as_proto = _proto_result(real, proto_futures[index]["request_id"])
        assert as_proto.metrics == as_json["metrics"]
        assert _logprobs(as_proto) == _logprobs(as_json)
    assert result(real, json_futures[1]["request_id"]) == result(real, proto_futures[1]["request_id"])
    before = result(real, json_futures[0]["request_id"])["metrics"]["loss:sum"]
    assert result(real, json_futures[2]["request_id"])["metrics"]["loss:sum"] < before


def test_int32_bfloat16_and_sparse_tensors_read_like_dense_json(real: TestClient) -> None:
    model = _model(real, 2)
    tokens = TOKENS[:-1]
    n = len(tokens)
    targets = np.stack([TOKENS[1:], TOKENS[::-1][:n]], axis=1)  # two targets per position
    weights = np.zeros((n, 2), dtype=np.float32)
    weights[::2, 0], weights[1::3, 1] = 0.5, -1.25  # exact in bfloat16
    dense = {
        "model_input": {"chunks": [{"tokens": tokens, "type": "encoded_text"}]},
        "loss_fn_inputs": {
            "target_tokens": {"data": targets.reshape(-1).tolist(), "dtype": "int64", "shape": [n, 2]},
            "weights": {"data": weights.reshape(-1).tolist(), "dtype": "float32", "shape": [n, 2]},
        },
    }
    as_json = result(
        real,
        post_ok(
            real,
            "/forward",
            {"model_id": model, "seq_id": 1, "forward_input": {"data": [dense], "loss_fn": "cross_entropy"}},
        )["request_id"],
    )

    rows, cols = np.nonzero(weights)
    sparse_weights = types.TensorData(
        data=weights[rows, cols].tolist(),
        dtype="float32",
        shape=[n, 2],
        sparse_crow_indices=np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n)))).tolist(),
        sparse_col_indices=cols.tolist(),
    )
    message = schema.ForwardBackwardRequest(
        model_id=model, seq_id=2, loss_fn="cross_entropy", forward_only=True
    )
    datum = message.data.add()
    datum.model_input.add().encoded_text.tokens = np.asarray(tokens, dtype="<i4").tobytes()
    tensor_data_to_proto(
        types.TensorData.model_validate(dense["loss_fn_inputs"]["target_tokens"]),
        datum.loss_fn_inputs["target_tokens"],
        INT32,
    )
    tensor_data_to_proto(sparse_weights, datum.loss_fn_inputs["weights"], BFLOAT16)
    as_proto = _proto_result(
        real, post_proto(real, "/forward_backward", message.SerializeToString())["request_id"]
    )
    assert as_proto.metrics == as_json["metrics"]
    assert _logprobs(as_proto) == _logprobs(as_json)


def test_a_model_made_by_load_weights_continues_like_the_uninterrupted_run(real: TestClient) -> None:
    data = [_datum(1)]
    uninterrupted = _model(real, 3)
    futures = [
        post_ok(real, "/forward_backward", fwd_bwd(uninterrupted, 1, data)),
        post_ok(real, "/optim_step", optim(uninterrupted, 2, lr=2e-2)),
        post_ok(real, "/save_weights", {"model_id": uninterrupted, "seq_id": 3, "path": "mid"}),
        post_ok(real, "/forward_backward", fwd_bwd(uninterrupted, 4, data)),
        post_ok(real, "/optim_step", optim(uninterrupted, 5, lr=2e-2)),
        post_ok(
            real,
            "/forward",
            {
                "model_id": uninterrupted,
                "seq_id": 6,
                "forward_input": fwd_bwd(uninterrupted, 6, data)["forward_backward_input"],
            },
        ),
    ]
    path = result(real, futures[2]["request_id"])["path"]
    at_mid = result(real, futures[3]["request_id"])
    after_step = result(real, futures[5]["request_id"])

    session = post_ok(real, "/create_session", {"sdk_version": "0.38.0"})["session_id"]
    for model_seq_id, optimizer in ((0, True), (1, False)):
        created = post_ok(
            real,
            "/load_weights",
            {"session_id": session, "model_seq_id": model_seq_id, "path": path, "optimizer": optimizer},
        )
        model = created["model_id"]
        assert model == f"{session}:train:{model_seq_id}"
        resumed = [
            post_proto(real, "/forward_backward", proto_fwd_bwd(model, 1, data)),
            post_ok(real, "/optim_step", optim(model, 2, lr=2e-2)),
            post_proto(real, "/forward_backward", proto_fwd_bwd(model, 3, data, forward_only=True)),
        ]
        assert result(real, created["request_id"])["model_id"] == model
        first = _proto_result(real, resumed[0]["request_id"])
        assert first.metrics == at_mid["metrics"] and _logprobs(first) == _logprobs(at_mid)
        step = result(real, resumed[1]["request_id"])["metrics"]
        stepped = _proto_result(real, resumed[2]["request_id"])
        if optimizer:  # the restored AdamW state makes this step the uninterrupted run's second step
            assert step["step"] == 2.0
            assert _logprobs(stepped)[0] == pytest.approx(_logprobs(after_step)[0], abs=1e-6)
        else:  # weights only: a fresh optimizer takes a first step from the same weights
            assert step["step"] == 1.0
            assert _logprobs(stepped) != _logprobs(after_step)
    run = real.get(f"{API}/training_runs/{session}:train:0").json()
    assert run["training_run_id"] == f"{session}:train:0" and run["is_lora"] and run["lora_rank"] == 8
