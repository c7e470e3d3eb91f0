"""The real TorchEngine (built-in tiny model) driven through the routes, in process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cookbook.client import types
from server_stub.torch_engine import TorchEngine

from .web_wire import API, ce_datum, fwd_bwd, optim, post_ok, result, sample_body

TOKENS = [5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 200, 31]


class GatedEngine:
    """The real engine, with a gate that can hold forward_backward so requests pile up behind it."""

    def __init__(self, engine: TorchEngine) -> None:
        self._engine = engine
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def forward_backward(self, *args: Any, **kwargs: Any) -> types.ForwardBackwardOutput:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(60)
        return self._engine.forward_backward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> GatedEngine:
    return GatedEngine(TorchEngine(tmp_path_factory.mktemp("storage"), device="cpu"))


@pytest.fixture
def real_client(make_client: Callable[..., TestClient], real_engine: GatedEngine) -> Iterator[TestClient]:
    yield make_client(real_engine, long_poll_seconds=5.0)
    if real_engine.gate is not None:
        real_engine.gate.set()
        real_engine.gate = None


def base_sampler(client: TestClient, seq_id: int) -> str:
    """A sampling session of the base model."""
    body = {"session_id": "s", "sampling_session_seq_id": seq_id, "base_model": "tiny-llama"}
    return post_ok(client, "/create_sampling_session", body)["sampling_session_id"]


def _datum() -> dict[str, Any]:
    datum = ce_datum(TOKENS[:-1])
    datum["loss_fn_inputs"]["target_tokens"]["data"] = TOKENS[1:]
    return datum


def test_train_then_sample_through_the_routes(real_client: TestClient, tmp_path: Path) -> None:
    client = real_client
    created = post_ok(
        client,
        "/create_model",
        {"session_id": "s", "model_seq_id": 0, "base_model": "tiny-llama", "lora_config": {"rank": 0}},
    )
    model = created["model_id"]
    # pipelined: all four calls are queued before any result is read
    futures = [
        post_ok(client, "/forward_backward", fwd_bwd(model, 1, [_datum()])),
        post_ok(client, "/optim_step", optim(model, 2, lr=1e-2)),
        post_ok(client, "/forward_backward", fwd_bwd(model, 3, [_datum()])),
        post_ok(client, "/save_weights_for_sampler", {"model_id": model, "seq_id": 4}),
    ]
    assert result(client, created["request_id"]) == {"model_id": model, "type": "create_model"}
    first, step, second, snapshot = (result(client, f["request_id"]) for f in futures)
    before = types.ForwardBackwardOutput.model_validate(first)
    after = types.ForwardBackwardOutput.model_validate(second)
    assert len(before.loss_fn_outputs[0]["logprobs"].data) == len(TOKENS) - 1
    assert after.metrics["loss:sum"] < before.metrics["loss:sum"]
    assert "metrics" in step
    sampler = snapshot["sampling_session_id"]
    assert client.get(f"{API}/samplers/{sampler}").json()["base_model"] == "tiny-llama"

    answer = types.SampleResponse.model_validate(
        result(
            client,
            post_ok(
                client, "/asample", sample_body(sampler, TOKENS[:4], num_samples=2, max_tokens=5, seed=7)
            )["request_id"],
        )
    )
    assert len(answer.sequences) == 2
    assert all(1 <= len(s.tokens) <= 5 and len(s.logprobs or []) == len(s.tokens) for s in answer.sequences)

    info = post_ok(client, "/get_info", {"model_id": model})
    assert info["model_id"] == model and info["model_data"]["model_name"] == "tiny-llama"
    # a bad request against the real engine is refused up front; the model keeps training
    bad = client.post(f"{API}/forward_backward", json=fwd_bwd(model, 5, [ce_datum([1, 100_000])]))
    assert bad.status_code == 400 and "vocabulary" in bad.json()["error"]
    ok = post_ok(client, "/forward_backward", fwd_bwd(model, 6, [_datum()]))
    assert "loss_fn_outputs" in result(client, ok["request_id"])


def test_concurrent_samples_are_batched_without_changing_seeded_results(
    real_client: TestClient, real_engine: GatedEngine
) -> None:
    client = real_client
    base = base_sampler(client, 0)
    created = post_ok(
        client,
        "/create_model",
        {"session_id": "s", "model_seq_id": 1, "base_model": "tiny-llama", "lora_config": {"rank": 4}},
    )
    model = result(client, created["request_id"])["model_id"]
    bodies = [
        sample_body(base, TOKENS[: 3 + i], max_tokens=4, seed=100 + i, num_samples=1 + i % 2)
        for i in range(4)
    ]
    alone = [result(client, post_ok(client, "/asample", b)["request_id"]) for b in bodies]

    real_engine.gate, real_engine.entered = threading.Event(), threading.Event()
    blocker = post_ok(client, "/forward_backward", fwd_bwd(model, 1, [_datum()]))
    assert real_engine.entered.wait(60)
    futures = [post_ok(client, "/asample", b) for b in bodies]
    real_engine.gate.set()
    real_engine.gate = None
    result(client, blocker["request_id"])
    together = [result(client, f["request_id"]) for f in futures]
    assert client.app.state.scheduler.sample_batch_sizes[-1] == len(bodies)
    assert [[s["tokens"] for s in r["sequences"]] for r in together] == [
        [s["tokens"] for s in r["sequences"]] for r in alone
    ]


def test_asample_batch_runs_as_one_batch_and_answers_what_each_request_gets_alone(
    real_client: TestClient,
) -> None:
    client = real_client
    sampler = base_sampler(client, 1)
    bodies = [
        sample_body(sampler, TOKENS[: 2 + i], max_tokens=5, seed=300 + i, num_samples=1 + i % 3)
        for i in range(5)
    ]
    alone = [result(client, post_ok(client, "/asample", b)["request_id"]) for b in bodies]
    future = post_ok(client, "/asample_batch", {"requests": bodies})
    answer = types.SampleBatchResponse.model_validate(result(client, future["request_id"]))
    assert client.app.state.scheduler.sample_batch_sizes[-1] == len(bodies)
    assert [[s.tokens for s in item.response.sequences] for item in answer.results if item.response] == [
        [s["tokens"] for s in r["sequences"]] for r in alone
    ]


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        ([], "requests"),
        ([{"bad": "body"}], "requests.0.prompt"),
        ("one bad token", "requests.1.prompt"),
        ("an unknown sampler", "requests.1.sampling_session_id"),
    ],
)
def test_a_bad_asample_batch_is_refused_whole_naming_the_request(
    real_client: TestClient, requests: Any, field: str
) -> None:
    client = real_client
    sampler = base_sampler(client, 2)
    good = sample_body(sampler, TOKENS[:3])
    if requests == "one bad token":
        requests = [good, sample_body(sampler, [10**7]), good]
    elif requests == "an unknown sampler":
        requests = [good, sample_body("sampler-nope", TOKENS[:3])]
    queued = len(client.app.state.scheduler.sample_batch_sizes)
    response = client.post(API + "/asample_batch", json={"requests": requests})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["field"].startswith(field)
    result(client, post_ok(client, "/asample", good)["request_id"])  # the server still serves
    # and queued nothing of the refused batch: the one request after it ran alone
    assert list(client.app.state.scheduler.sample_batch_sizes)[queued:] == [1]


def test_execution_errors_from_the_real_engine_resolve_as_user_errors(real_client: TestClient) -> None:
    client = real_client
    created = post_ok(
        client,
        "/create_model",
        {"session_id": "s", "model_seq_id": 2, "base_model": "tiny-llama", "lora_config": {"rank": 8}},
    )
    model = result(client, created["request_id"])["model_id"]
    saved = post_ok(client, "/save_weights", {"model_id": model, "seq_id": 1, "path": "dup"})
    assert result(client, saved["request_id"])["path"] == f"tinker://{model}/weights/dup"
    clash = post_ok(client, "/save_weights", {"model_id": model, "seq_id": 2, "path": "dup"})
    failed = result(client, clash["request_id"])
    assert failed["category"] == "user" and "dup" in failed["error"]
    listed = client.get(f"{API}/training_runs/{model}/checkpoints").json()["checkpoints"]
    assert [c["checkpoint_id"] for c in listed] == ["weights/dup"]
    assert client.delete(f"{API}/training_runs/{model}/checkpoints/weights/dup").status_code == 204
    assert client.get(f"{API}/training_runs/{model}/checkpoints").json()["checkpoints"] == []
    unload = post_ok(client, "/unload_model", {"model_id": model})
    assert result(client, unload["request_id"])["model_id"] == model
    assert client.post(f"{API}/get_info", json={"model_id": model}).status_code == 404
