"""Every validation rule, through the routes: a JSON ErrorBody naming the field, and the server keeps going."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .web_fake_engine import BASE_MODEL, CONTEXT, VOCAB
from .web_wire import (
    API,
    ORDERED_ROUTES,
    ce_datum,
    fwd_bwd,
    new_model,
    optim,
    post_ok,
    result,
    rl_datum,
    sample_body,
)

SEQ = 3  # seq ids 1 and 2 are used by the setup below


@dataclass
class Ctx:
    model: str
    sampler: str
    checkpoint: str


def _edit(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set body[a][b]... along a dotted path (integers index lists); value None deletes."""
    body = copy.deepcopy(body)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = body
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return body


def fb(
    ctx: Ctx,
    path: str = "",
    value: Any = None,
    data: list[dict[str, Any]] | None = None,
    loss_fn: str = "cross_entropy",
) -> dict[str, Any]:
    body = fwd_bwd(ctx.model, SEQ, data, loss_fn)
    return _edit(body, path, value) if path else body


DATUM = "forward_backward_input.data.0"
INPUTS = f"{DATUM}.loss_fn_inputs"
Case = tuple[str, Callable[[Ctx], dict[str, Any] | bytes], int, str | None, str]

CASES: dict[str, Case] = {
    # parsing and schema
    "malformed json": ("/forward_backward", lambda c: b'{"model_id": ', 400, "body", "malformed JSON"),
    "missing field": (
        "/forward_backward",
        lambda c: fb(c, "forward_backward_input", None),
        400,
        "forward_backward_input",
        "Field required",
    ),
    "wrong type deep": (
        "/forward_backward",
        lambda c: fb(c, f"{DATUM}.model_input.chunks.0.tokens", "abc"),
        400,
        f"{DATUM}.model_input.chunks.0.tokens",
        "valid array",
    ),
    "unknown loss": (
        "/forward_backward",
        lambda c: fb(c, "forward_backward_input.loss_fn", "bogus"),
        400,
        "forward_backward_input.loss_fn",
        "cross_entropy",
    ),
    "missing seq_id": ("/forward_backward", lambda c: fb(c, "seq_id", None), 400, "seq_id", "required"),
    "zero seq_id": ("/forward_backward", lambda c: fb(c, "seq_id", 0), 400, "seq_id", ">= 1"),
    "unknown model": (
        "/forward_backward",
        lambda c: fb(c, "model_id", "run-nope"),
        404,
        "model_id",
        "run-nope",
    ),
    # loss inputs
    "missing weights": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.weights", None),
        400,
        INPUTS,
        "missing 'weights'",
    ),
    "missing advantages": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.advantages", None, [rl_datum([1, 2])], "ppo"),
        400,
        INPUTS,
        "missing 'advantages'",
    ),
    "unknown input": (
        "/forward_backward",
        lambda c: fb(
            c,
            f"{INPUTS}.advantage",
            {"data": [1.0, 1.0], "dtype": "float32"},
            [rl_datum([1, 2])],
            "importance_sampling",
        ),
        400,
        f"{INPUTS}.advantage",
        "not an input",
    ),
    "weights length": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.weights", {"data": [1.0, 1.0], "dtype": "float32"}),
        400,
        f"{INPUTS}.weights",
        "shape [2] != target_tokens shape [3]",
    ),
    "target length": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.target_tokens", {"data": [1, 2], "dtype": "int64"}),
        400,
        f"{INPUTS}.target_tokens",
        "length 2 != model_input length 3",
    ),
    "rl length": (
        "/forward_backward",
        lambda c: fb(
            c, f"{INPUTS}.logprobs", {"data": [0.0], "dtype": "float32"}, [rl_datum([1, 2])], "cispo"
        ),
        400,
        f"{INPUTS}.logprobs",
        "length 1 != target length 2",
    ),
    "input token id": (
        "/forward_backward",
        lambda c: fb(c, data=[ce_datum([1, VOCAB])]),
        400,
        f"{DATUM}.model_input",
        f"token id {VOCAB} at position 1",
    ),
    "negative target": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.target_tokens.data", [1, -1, 2]),
        400,
        f"{INPUTS}.target_tokens",
        "token id -1",
    ),
    "float target": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.target_tokens.dtype", "float32"),
        400,
        f"{INPUTS}.target_tokens",
        "int64",
    ),
    "nan weight": (
        "/forward_backward",
        lambda c: json.dumps(fb(c, f"{INPUTS}.weights.data", [1.0, float("nan"), 1.0])).encode(),
        400,
        f"{INPUTS}.weights",
        "non-finite value nan at position 1",
    ),
    "inf advantage": (
        "/forward_backward",
        lambda c: json.dumps(
            fb(c, f"{INPUTS}.advantages.data", [1.0, float("inf")], [rl_datum([1, 2])], "dro")
        ).encode(),
        400,
        f"{INPUTS}.advantages",
        "non-finite",
    ),
    "huge float": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.weights.data", [1.0, 1e39, 1.0]),
        400,
        f"{INPUTS}.weights",
        "float32 range",
    ),
    "too long": (
        "/forward_backward",
        lambda c: fb(c, data=[ce_datum([1] * (CONTEXT + 1))]),
        400,
        f"{DATUM}.model_input",
        f"exceeds the model's context length {CONTEXT}",
    ),
    "no data": (
        "/forward_backward",
        lambda c: fb(c, "forward_backward_input.data", []),
        400,
        "forward_backward_input.data",
        "empty",
    ),
    "empty input": (
        "/forward",
        lambda c: {
            "model_id": c.model,
            "seq_id": SEQ,
            "forward_input": {"data": [ce_datum([])], "loss_fn": "cross_entropy"},
        },
        400,
        "forward_input.data.0.model_input",
        "empty",
    ),
    "bad config key": (
        "/forward_backward",
        lambda c: fb(c, "forward_backward_input.loss_fn_config", {"beta": 0.1}),
        400,
        "forward_backward_input.loss_fn_config.beta",
        "not a setting of cross_entropy",
    ),
    "shape mismatch": (
        "/forward_backward",
        lambda c: fb(c, f"{INPUTS}.weights.shape", [2]),
        400,
        f"{INPUTS}.weights",
        "does not match 3 data values",
    ),
    # optimizer
    "negative lr": (
        "/optim_step",
        lambda c: optim(c.model, SEQ, lr=-1.0),
        400,
        "adam_params.learning_rate",
        ">= 0",
    ),
    "infinite lr": (
        "/optim_step",
        lambda c: json.dumps(optim(c.model, SEQ, lr=float("inf"))).encode(),
        400,
        "adam_params.learning_rate",
        "finite",
    ),
    "beta1 one": (
        "/optim_step",
        lambda c: optim(c.model, SEQ, beta1=1.0),
        400,
        "adam_params.beta1",
        "[0, 1)",
    ),
    "beta2 negative": (
        "/optim_step",
        lambda c: optim(c.model, SEQ, beta2=-0.1),
        400,
        "adam_params.beta2",
        "[0, 1)",
    ),
    "eps zero": ("/optim_step", lambda c: optim(c.model, SEQ, eps=0.0), 400, "adam_params.eps", "> 0"),
    "weight decay": (
        "/optim_step",
        lambda c: optim(c.model, SEQ, weight_decay=-1.0),
        400,
        "adam_params.weight_decay",
        ">= 0",
    ),
    "clip norm": (
        "/optim_step",
        lambda c: optim(c.model, SEQ, grad_clip_norm=-1.0),
        400,
        "adam_params.grad_clip_norm",
        ">= 0",
    ),
    # sampling
    "zero samples": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], num_samples=0),
        400,
        "num_samples",
        "[1, 256]",
    ),
    "too many samples": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], num_samples=10_000),
        400,
        "num_samples",
        "[1, 256]",
    ),
    "zero max_tokens": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], max_tokens=0),
        400,
        "sampling_params.max_tokens",
        ">= 1",
    ),
    "empty prompt": ("/asample", lambda c: sample_body(c.sampler, []), 400, "prompt", "empty"),
    "prompt token": (
        "/asample",
        lambda c: sample_body(c.sampler, [1, VOCAB + 5]),
        400,
        "prompt",
        "vocabulary",
    ),
    "over context": (
        "/asample",
        lambda c: sample_body(c.sampler, [1] * 30, max_tokens=3),
        400,
        "sampling_params.max_tokens",
        f"exceeds the model's context length {CONTEXT}",
    ),
    "prompt fills context": (
        "/asample",
        lambda c: sample_body(c.sampler, [1] * CONTEXT, max_tokens=None),
        400,
        "prompt",
        "no room",
    ),
    "negative temperature": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], temperature=-0.5),
        400,
        "sampling_params.temperature",
        ">= 0",
    ),
    "top_k zero": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], top_k=0),
        400,
        "sampling_params.top_k",
        "-1",
    ),
    "top_p zero": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], top_p=0.0),
        400,
        "sampling_params.top_p",
        "(0, 1]",
    ),
    "top_p above one": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], top_p=1.5),
        400,
        "sampling_params.top_p",
        "(0, 1]",
    ),
    "stop token": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], stop=[3, VOCAB]),
        400,
        "sampling_params.stop.1",
        "outside the vocabulary",
    ),
    "empty stop string": (
        "/asample",
        lambda c: sample_body(c.sampler, [1], stop=""),
        400,
        "sampling_params.stop",
        "empty",
    ),
    "no sampler": (
        "/asample",
        lambda c: _edit(sample_body("x", [1]), "sampling_session_id", None),
        400,
        "sampling_session_id",
        "required",
    ),
    "unknown sampler": (
        "/asample",
        lambda c: sample_body("sampler-nope", [1]),
        404,
        "sampling_session_id",
        "sampler-nope",
    ),
    # checkpoints
    "unsafe name": (
        "/save_weights",
        lambda c: {"model_id": c.model, "seq_id": SEQ, "path": "../evil"},
        400,
        "path",
        "not a valid name",
    ),
    "no name": ("/save_weights", lambda c: {"model_id": c.model, "seq_id": SEQ}, 400, "path", "required"),
    "zero ttl": (
        "/save_weights",
        lambda c: {"model_id": c.model, "seq_id": SEQ, "path": "x", "ttl_seconds": 0},
        400,
        "ttl_seconds",
        "positive",
    ),
    "slash in sampler name": (
        "/save_weights_for_sampler",
        lambda c: {"model_id": c.model, "seq_id": SEQ, "path": "a/b"},
        400,
        "path",
        "valid name",
    ),
    "bad load path": (
        "/load_weights",
        lambda c: {"model_id": c.model, "seq_id": SEQ, "path": "tinker://bad", "optimizer": False},
        400,
        "path",
        "tinker://<run>/<kind>/<name>",
    ),
    "unknown checkpoint": (
        "/load_weights",
        lambda c: {
            "model_id": c.model,
            "seq_id": SEQ,
            "optimizer": True,
            "path": f"tinker://{c.model}/weights/nope",
        },
        404,
        "path",
        "no checkpoint",
    ),
    "bad weights_info path": (
        "/weights_info",
        lambda c: {"tinker_path": "s3://x/y/z"},
        400,
        "tinker_path",
        "tinker://",
    ),
    "unknown weights_info": (
        "/weights_info",
        lambda c: {"tinker_path": "tinker://r/weights/nope"},
        404,
        "path",
        "no checkpoint",
    ),
    # models and samplers
    "rank not power of two": (
        "/create_model",
        lambda c: {
            "session_id": "s",
            "model_seq_id": 9,
            "base_model": BASE_MODEL,
            "lora_config": {"rank": 3},
        },
        400,
        "lora_config.rank",
        "power of two",
    ),
    "nothing to train": (
        "/create_model",
        lambda c: {
            "session_id": "s",
            "model_seq_id": 9,
            "base_model": BASE_MODEL,
            "lora_config": {"rank": 8, "train_attn": False, "train_mlp": False, "train_unembed": False},
        },
        400,
        "lora_config",
        "at least one",
    ),
    "unknown base model": (
        "/create_model",
        lambda c: {"session_id": "s", "model_seq_id": 9, "base_model": "gpt-9"},
        404,
        "base_model",
        "gpt-9",
    ),
    "sampler unknown base": (
        "/create_sampling_session",
        lambda c: {"session_id": "s", "sampling_session_seq_id": 5, "base_model": "gpt-9"},
        404,
        "base_model",
        "gpt-9",
    ),
    "sampler bad path": (
        "/create_sampling_session",
        lambda c: {"session_id": "s", "sampling_session_seq_id": 5, "model_path": "tinker://a/b"},
        400,
        "model_path",
        "tinker://",
    ),
    "sampler without model": (
        "/create_sampling_session",
        lambda c: {"session_id": "s", "sampling_session_seq_id": 5},
        400,
        "base_model",
        "base_model or model_path",
    ),
    "retrieve without id": ("/retrieve_future", lambda c: {}, 400, "request_id", "Field required"),
}


@pytest.fixture
def ctx(client: TestClient) -> Ctx:
    model = new_model(client)
    saved = post_ok(client, "/save_weights", {"model_id": model, "seq_id": 1, "path": "ck"})
    sampler = post_ok(client, "/save_weights_for_sampler", {"model_id": model, "seq_id": 2})
    return Ctx(
        model,
        result(client, sampler["request_id"])["sampling_session_id"],
        result(client, saved["request_id"])["path"],
    )


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_is_refused_with_a_named_field(client: TestClient, ctx: Ctx, name: str) -> None:
    path, build, status, field, fragment = CASES[name]
    body = build(ctx)
    if isinstance(body, bytes):
        response = client.post(API + path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(API + path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "category", "field"}
    assert error["category"] == "user" and error["field"] == field
    assert fragment in error["error"], error["error"]
    # The server keeps serving. A refused training call that named this model and seq id
    # consumed it, so the next seq id must not wait for it; anything else left seq SEQ free.
    try:
        sent = json.loads(body) if isinstance(body, bytes) else body
    except ValueError:
        sent = {}
    consumed = path in ORDERED_ROUTES and sent.get("model_id") == ctx.model and sent.get("seq_id") == SEQ
    follow_ups = [SEQ + 1] if consumed else [SEQ, SEQ + 1]
    futures = [post_ok(client, "/forward_backward", fwd_bwd(ctx.model, seq)) for seq in follow_ups]
    assert all("loss_fn_outputs" in result(client, f["request_id"]) for f in futures)


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = client.post(f"{API}/no_such_route", json={})
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    wrong_method = client.get(f"{API}/forward_backward")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error", "category", "field"}
    hidden = client.get(f"{API}/training_runs/.hidden")
    assert hidden.status_code == 400 and hidden.json()["field"] == "training_run_id"
    bad_kind = client.delete(f"{API}/training_runs/run-x/checkpoints/other/name")
    assert bad_kind.status_code == 400 and bad_kind.json()["field"] == "checkpoint_id"
