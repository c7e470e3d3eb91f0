"""Every request limit: a clear 4xx (413 for sizes) that names the flag raising it, before any work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from tests.server.web.web_fake_engine import BASE_MODEL, FakeEngine

from .fake_app import API, datum, fake_client, fwd_bwd, new_model, ok, result


def refused(response: object, status: int, flag: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert flag in body["error"], body
    assert body["category"] == "user"


def test_a_body_over_the_byte_limit_is_refused_while_read(tmp_path: Path) -> None:
    def stream() -> Iterator[bytes]:
        yield b'{"model_id": "x", "seq_id": 1, "pad": "'
        for _ in range(64):  # 4 MiB against a 64 KiB limit; the reader keeps only the body's ends
            yield b"a" * 65536
        yield b'"}'

    with fake_client(tmp_path, max_request_bytes=65536) as client:
        response = client.post(
            API + "/forward_backward", content=stream(), headers={"content-type": "application/json"}
        )
        refused(response, 413, "--max-request-bytes")


def test_tokens_per_datum_and_per_request(tmp_path: Path) -> None:
    with fake_client(tmp_path, max_tokens_per_datum=8, max_tokens_per_request=20) as client:
        model = new_model(client)
        long_datum = client.post(API + "/forward_backward", json=fwd_bwd(model, 1, [datum(9)]))
        refused(long_datum, 413, "--max-tokens-per-datum")
        assert long_datum.json()["field"] == "forward_backward_input.data.0.model_input"
        many = client.post(API + "/forward_backward", json=fwd_bwd(model, 2, [datum(8)] * 3))
        refused(many, 413, "--max-tokens-per-request")
        assert "loss_fn_outputs" in result(
            client, ok(client, "/forward_backward", fwd_bwd(model, 3, [datum(8)] * 2))
        )


def sample_request(num_samples: int, max_tokens: int) -> dict[str, object]:
    return {
        "base_model": BASE_MODEL,
        "num_samples": num_samples,
        "prompt": {"chunks": [{"tokens": [1, 2, 3, 4], "type": "encoded_text"}]},
        "sampling_params": {"max_tokens": max_tokens},
    }


def test_samples_times_tokens_per_sample_request(tmp_path: Path) -> None:
    with fake_client(tmp_path, max_sample_tokens=100) as client:
        refused(client.post(API + "/asample", json=sample_request(10, 8)), 413, "--max-sample-tokens")
        assert "sequences" in result(client, ok(client, "/asample", sample_request(8, 8)))


def test_metadata_size(tmp_path: Path) -> None:
    big = {"notes": "x" * 2000}
    with fake_client(tmp_path, max_metadata_bytes=1024) as client:
        session = client.post(API + "/create_session", json={"sdk_version": "t", "user_metadata": big})
        refused(session, 413, "--max-metadata-bytes")
        tags = client.post(API + "/create_session", json={"sdk_version": "t", "tags": ["t" * 2000]})
        refused(tags, 413, "--max-metadata-bytes")
        body = {
            "session_id": "s",
            "model_seq_id": 0,
            "base_model": BASE_MODEL,
            "lora_config": {"rank": 1},
            "user_metadata": big,
        }
        refused(client.post(API + "/create_model", json=body), 413, "--max-metadata-bytes")


def test_models_per_session_are_refused_and_samplers_rotate(tmp_path: Path) -> None:
    engine = FakeEngine()
    with fake_client(tmp_path, engine, max_models_per_session=2, max_samplers_per_session=1) as client:
        session = ok(client, "/create_session", {"sdk_version": "t"})["session_id"]
        first, _ = new_model(client, session, 0), new_model(client, session, 1)
        body = {
            "session_id": session,
            "model_seq_id": 2,
            "base_model": BASE_MODEL,
            "lora_config": {"rank": 1},
        }
        refused(client.post(API + "/create_model", json=body), 400, "--max-models-per-session")
        result(client, ok(client, "/unload_model", {"model_id": first}))
        assert new_model(client, session, 3)  # room again once one is unloaded
        sampler = {"session_id": session, "sampling_session_seq_id": 0, "base_model": BASE_MODEL}
        first = ok(client, "/create_sampling_session", sampler)["sampling_session_id"]
        assert ok(client, "/create_sampling_session", sampler)["sampling_session_id"] == first  # a retry
        second = ok(client, "/create_sampling_session", {**sampler, "sampling_session_seq_id": 1})
        assert second["sampling_session_id"] != first
        while ("release_sampler", first) not in [
            call[:2] for call in engine.calls
        ]:  # the oldest past the limit
            time.sleep(0.01)


def test_storage_per_owner(tmp_path: Path) -> None:
    with fake_client(tmp_path, max_storage_bytes_per_owner=1000) as client:
        model = new_model(client)
        assert "path" in result(
            client, ok(client, "/save_weights", {"model_id": model, "seq_id": 1, "path": "a"})
        )
        weights = (
            tmp_path / "runs" / model / "weights" / "a"
        )  # the fake engine writes nothing: stand in for it
        weights.mkdir(parents=True)
        (weights / "adapter.safetensors").write_bytes(b"w" * 1000)
        usage = client.get(API + "/storage_usage").json()
        assert usage == {"owner": "default", "used_bytes": 1000, "limit_bytes": 1000}
        full = client.post(API + "/save_weights", json={"model_id": model, "seq_id": 2, "path": "b"})
        refused(full, 413, "--max-storage-bytes-per-owner")
        nameless = ok(client, "/save_weights_for_sampler", {"model_id": model, "seq_id": 3})
        assert "sampling_session_id" in result(client, nameless)  # memory snapshots take no disk


def test_limits_are_server_flags() -> None:
    from server_stub.config import build_parser

    flags = build_parser().format_help()
    for flag in (
        "--max-request-bytes",
        "--max-tokens-per-request",
        "--max-tokens-per-datum",
        "--max-sample-tokens",
        "--max-models-per-session",
        "--max-samplers-per-session",
        "--max-storage-bytes-per-owner",
        "--max-metadata-bytes",
        "--keys-file",
        "--idle-unload-seconds",
    ):
        assert flag in flags


def test_snapshots_for_sampling_keep_only_the_newest_per_session(tmp_path: Path) -> None:
    engine = FakeEngine()
    with fake_client(tmp_path, engine, max_samplers_per_session=2) as client:
        session = ok(client, "/create_session", {"sdk_version": "t"})["session_id"]
        model = new_model(client, session)
        samplers = [
            result(client, ok(client, "/save_weights_for_sampler", {"model_id": model, "seq_id": seq}))[
                "sampling_session_id"
            ]
            for seq in (1, 2, 3)
        ]
        engine.wait_for_calls(5)  # create, three saves, one release
        assert ("release_sampler", samplers[0]) in [call[:2] for call in engine.calls]
        assert ("release_sampler", samplers[2]) not in [call[:2] for call in engine.calls]
