"""A fuzz of every route in /openapi.json: no input is answered 5xx, and the server still serves.

Bodies are drawn from what each route's documented schema names (its field names, with values of
any JSON type, often the ids and paths of things that exist), from arbitrary JSON, and from raw
bytes; path parameters from the same pool. After the fuzz a good training step and a good sample
request are served. The document itself must give every body-reading route a resolvable body.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server_stub.app import create_app
from server_stub.config import ServerConfig
from server_stub.torch_engine import TorchEngine

from .conftest import BASE_MODEL, create_model_body, fwd_bwd

EXAMPLES_PER_ROUTE = 40
NO_BODY = {"/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}/publish"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine = TorchEngine(tmp_path_factory.mktemp("fuzz-storage"), device="cpu")
    config = ServerConfig(storage_dir=engine.layout.root, long_poll_seconds=0.05, max_tokens_per_request=4096)
    with TestClient(create_app(engine, config), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def existing(fuzzed: TestClient) -> dict[str, str]:
    """Ids that exist, so the fuzz reaches past the not-found checks."""
    session = fuzzed.post("/api/v1/create_session", json={"sdk_version": "fuzz"}).json()["session_id"]
    created = fuzzed.post("/api/v1/create_model", json=create_model_body(session)).json()
    model = wait(fuzzed, created["request_id"])["model_id"]
    saved = fuzzed.post("/api/v1/save_weights", json={"model_id": model, "seq_id": 1, "path": "ck"}).json()
    state = wait(fuzzed, saved["request_id"])["path"]
    sampler_future = fuzzed.post(
        "/api/v1/save_weights_for_sampler", json={"model_id": model, "seq_id": 2}
    ).json()
    sampler = wait(fuzzed, sampler_future["request_id"])["sampling_session_id"]
    return {"session": session, "model": model, "state": state, "sampler": sampler, "base": BASE_MODEL}


def wait(client: TestClient, request_id: str) -> dict[str, Any]:
    while True:
        answer = client.post("/api/v1/retrieve_future", json={"request_id": request_id}).json()
        if answer.get("type") != "try_again":
            return answer


def json_values(known: list[str]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.sampled_from(known),
        st.sampled_from(["cross_entropy", "ppo", "encoded_text", "float32", "int64", "weights/ck"]),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
        ),
        max_leaves=25,
    )


def field_names(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """Every property name in the schemas the operation's JSON body can reach."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    names: set[str] = set()
    seen: set[str] = set()
    pending = [content.get("schema", {})]
    while pending:
        schema = pending.pop()
        if not isinstance(schema, dict):
            continue
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            pending.append(document["components"]["schemas"][ref.rsplit("/", 1)[1]])
        names.update(schema.get("properties", {}))
        for value in schema.values():
            if isinstance(value, dict):
                pending.append(value)
            elif isinstance(value, list):
                pending.extend(value)
    return sorted(names)


def bodies(names: list[str], known: list[str]) -> st.SearchStrategy[bytes]:
    values = json_values(known)
    shaped = st.dictionaries(st.sampled_from(names or ["x"]), values, max_size=8) if names else values
    as_json = st.one_of(shaped, values).map(lambda value: json.dumps(value).encode())
    return st.one_of(as_json, as_json, st.binary(max_size=64))


def fuzz_route(
    client: TestClient,
    method: str,
    path: str,
    body_strategy: st.SearchStrategy[bytes],
    known: list[str],
    failures: list[tuple[str, str, int, str]],
) -> None:
    """EXAMPLES_PER_ROUTE requests to one route; each 5xx answer is added to `failures`."""
    params = [part[1:].split("}")[0] for part in path.split("/") if part.startswith("{")]
    segment = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(known))

    @settings(
        max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(body=body_strategy, values=st.lists(segment, min_size=4, max_size=4), protobuf=st.booleans())
    def probe(body: bytes, values: list[str], protobuf: bool) -> None:
        url = path
        for name, value in zip(params, values, strict=False):
            url = url.replace("{" + name + "}", quote(value, safe="") or "x", 1)
        content_type = "application/x-protobuf" if protobuf else "application/json"
        response = client.request(method.upper(), url, content=body, headers={"content-type": content_type})
        if response.status_code >= 500:
            failures.append((method, url, response.status_code, response.text[:300]))

    probe()


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.app.openapi()  # type: ignore[attr-defined]
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_every_route_that_reads_a_body_documents_it(fuzzed: TestClient) -> None:
    document = fuzzed.app.openapi()  # type: ignore[attr-defined]
    for method, path, op in operations(fuzzed):
        if method in ("post", "put", "patch") and path not in NO_BODY:
            assert "requestBody" in op, (method, path)
            if "$ref" in json.dumps(op["requestBody"]):
                assert field_names(document, op), (method, path)
    text = json.dumps(document)
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in document["components"]["schemas"], name


@pytest.mark.slow
def test_no_input_gets_a_server_error_and_the_server_still_serves(
    fuzzed: TestClient, existing: dict[str, str]
) -> None:
    document = fuzzed.app.openapi()  # type: ignore[attr-defined]
    known = [*existing.values(), f"tinker://{existing['model']}/sampler_weights/none"]
    failures: list[tuple[str, str, int, str]] = []
    for method, path, op in operations(fuzzed):
        fuzz_route(fuzzed, method, path, bodies(field_names(document, op), known), known, failures)
    assert failures == []
    # good requests are still served afterwards: a new model trains, the sampler samples
    session = fuzzed.post("/api/v1/create_session", json={"sdk_version": "after"}).json()["session_id"]
    created = fuzzed.post("/api/v1/create_model", json=create_model_body(session)).json()
    model = wait(fuzzed, created["request_id"])["model_id"]
    step = fuzzed.post("/api/v1/forward_backward", json=fwd_bwd(model, 1)).json()
    assert "loss_fn_outputs" in wait(fuzzed, step["request_id"])
    sample = {
        "sampling_session_id": existing["sampler"],
        "num_samples": 1,
        "prompt": {"chunks": [{"tokens": [5, 6, 7], "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": 3, "temperature": 0.0},
    }
    sampled = wait(fuzzed, fuzzed.post("/api/v1/asample", json=sample).json()["request_id"])
    assert len(sampled["sequences"][0]["tokens"]) >= 1
