"""Our client on the binary wire: protobuf forward_backward bodies and results, JSON as a setting."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from cookbook.client import errors, proto, types
from cookbook.client.http import HttpServiceClient
from cookbook.client.http.settings import ClientSettings

from .conftest import FAST_RETRY
from .fake_server import FakeServer, fake_logprob
from .test_training_client import datum, submitted_seq_ids


@pytest.fixture
def binary_fake() -> FakeServer:
    return FakeServer(protobuf=True)


def _client(fake: FakeServer, wire: str = "auto") -> HttpServiceClient:
    return HttpServiceClient("http://fake.test", retry=FAST_RETRY, transport=fake.transport(), wire=wire)  # type: ignore[arg-type]


@pytest.fixture
def binary_service(binary_fake: FakeServer) -> Iterator[HttpServiceClient]:
    client = _client(binary_fake)
    yield client
    client.close()


def _content_types(fake: FakeServer, path: str) -> list[str | None]:
    return [r.headers.get("content-type") for r in fake.requests if r.path == path]


def test_auto_speaks_protobuf_to_a_server_that_lists_it(
    binary_fake: FakeServer, binary_service: HttpServiceClient
) -> None:
    tc = binary_service.create_lora_training_client("fake-base", rank=8)
    out = tc.forward_backward([datum([1, 2, 3]), datum([4, 5])], "cross_entropy").result()
    fwd = tc.forward([datum([3, 2, 1])], "cross_entropy", {"clip": 0.5}).result()
    tc.optim_step(types.AdamParams()).result()

    assert _content_types(binary_fake, "/forward_backward") == [proto.PROTOBUF_CONTENT_TYPE] * 2
    assert _content_types(binary_fake, "/forward") == []  # a forward is forward_only on /forward_backward
    assert _content_types(binary_fake, "/optim_step") == ["application/json"]
    first, second = binary_fake.bodies("/forward_backward")
    assert "forward_backward_input" in first and second["forward_input"]["loss_fn_config"] == {"clip": 0.5}
    assert submitted_seq_ids(binary_fake) == [1, 2, 3]
    assert binary_fake.protobuf_answers == 2  # both results came as protobuf
    assert [t.data for t in (out.loss_fn_outputs[0]["logprobs"], out.loss_fn_outputs[1]["logprobs"])] == [
        pytest.approx([fake_logprob(2), fake_logprob(3)]),
        pytest.approx([fake_logprob(5)]),
    ]
    assert fwd.loss_fn_outputs[0]["logprobs"].data == pytest.approx([fake_logprob(2), fake_logprob(1)])
    assert out.metrics == {"loss:sum": 1.5, "seq:unique": 1.0}
    assert binary_fake.attempts["/get_server_capabilities"] == 1


def test_same_results_on_both_wires(binary_fake: FakeServer) -> None:
    results = {}
    for wire in ("json", "protobuf"):
        client = _client(binary_fake, wire)
        tc = client.create_lora_training_client("fake-base", rank=8)
        out = tc.forward_backward([datum([7, 8, 9, 10])], "cross_entropy").result()
        results[wire] = (out.loss_fn_outputs[0]["logprobs"].data, out.metrics)
        sampler = client.create_sampling_client(base_model="fake-base")
        sample = sampler.sample(
            types.ModelInput.from_ints([0, 1, 2]), 2, types.SamplingParams(max_tokens=3)
        ).result()
        logprobs = sampler.compute_logprobs(types.ModelInput.from_ints([0, 1, 2])).result()
        results[f"{wire}-sample"] = (
            [(s.tokens, s.logprobs, s.stop_reason) for s in sample.sequences],
            logprobs,
        )
        client.close()
    assert results["json"][0] == pytest.approx(results["protobuf"][0])
    assert results["json"][1] == results["protobuf"][1]
    (json_sequences, json_logprobs), (binary_sequences, binary_logprobs) = (
        results["json-sample"],
        results["protobuf-sample"],
    )
    assert [(tokens, reason) for tokens, _, reason in json_sequences] == [
        (tokens, reason) for tokens, _, reason in binary_sequences
    ]
    assert [lp for _, lp, _ in json_sequences] == [lp for _, lp, _ in binary_sequences]
    # Logprobs travel as float32; the first prompt logprob travels as NaN and comes back None.
    assert binary_logprobs[0] is None and json_logprobs[0] is None
    assert binary_logprobs[1:] == pytest.approx(json_logprobs[1:], rel=1e-6)
    # JSON asked for JSON; protobuf asked for, and got, protobuf forward_backward and sample results.
    assert binary_fake.protobuf_answers == 3


def test_wire_json_never_asks_for_protobuf(binary_fake: FakeServer) -> None:
    client = _client(binary_fake, "json")
    tc = client.create_lora_training_client("fake-base", rank=8)
    tc.forward([datum([1, 2])], "cross_entropy").result()
    client.close()
    assert _content_types(binary_fake, "/forward") == ["application/json"]
    polls = [r for r in binary_fake.requests if r.path == "/retrieve_future"]
    assert all(proto.PROTOBUF_CONTENT_TYPE not in r.headers.get("accept", "") for r in polls)
    assert binary_fake.protobuf_answers == 0 and binary_fake.attempts["/get_server_capabilities"] == 0


def test_auto_falls_back_to_json_for_a_server_without_protobuf(fake: FakeServer) -> None:
    client = _client(fake)
    tc = client.create_lora_training_client("fake-base", rank=8)
    out = tc.forward_backward([datum([1, 2, 3])], "cross_entropy").result()
    client.close()
    assert _content_types(fake, "/forward_backward") == ["application/json"]
    assert out.loss_fn_outputs[0]["logprobs"].data == pytest.approx([fake_logprob(2), fake_logprob(3)])
    polls = [r for r in fake.requests if r.path == "/retrieve_future"]
    assert proto.PROTOBUF_CONTENT_TYPE in polls[-1].headers["accept"]  # asked; the JSON answer was fine


def test_wire_protobuf_needs_no_capabilities_and_compresses_when_the_server_asks(
    binary_fake: FakeServer,
) -> None:
    binary_fake.client_config = {"proto_compress_fwdbwd": True}
    client = _client(binary_fake, "protobuf")
    tc = client.create_lora_training_client("fake-base", rank=8)
    tc.forward_backward([datum(list(range(1, 60)))], "cross_entropy").result()
    client.close()
    (record,) = [r for r in binary_fake.requests if r.path == "/forward_backward"]
    assert record.headers["content-encoding"] == proto.ZSTD
    assert binary_fake.attempts["/get_server_capabilities"] == 0


def test_pipelined_calls_keep_their_order_on_the_binary_wire(
    binary_fake: FakeServer, binary_service: HttpServiceClient
) -> None:
    binary_fake.submit_jitter_s = 0.003
    tc = binary_service.create_lora_training_client("fake-base", rank=8)
    futures = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            fb = tc.forward_backward([datum([1, 2, 3])], "cross_entropy")
            opt = tc.optim_step(types.AdamParams())
            with lock:
                futures.extend([fb, opt])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in futures:
        f.result()
    assert submitted_seq_ids(binary_fake) == list(range(1, 31))
    assert binary_fake.protobuf_answers == 15


def test_a_token_beyond_int32_is_refused_before_its_seq_id_is_used(binary_service: HttpServiceClient) -> None:
    tc = binary_service.create_lora_training_client("fake-base", rank=8)
    with pytest.raises(errors.InvalidInputError, match="int32"):
        tc.forward_backward([datum([1, 2**31, 3])], "cross_entropy")
    assert tc.forward_backward([datum([1, 2, 3])], "cross_entropy").result().metrics["seq:unique"] == 1.0


def test_a_protobuf_result_that_does_not_parse_is_a_clear_error(binary_fake: FakeServer) -> None:
    async def garbage_results(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/retrieve_future"):
            return httpx.Response(
                200, content=b"\xff\xff", headers={"Content-Type": proto.PROTOBUF_CONTENT_TYPE}
            )
        return await binary_fake.handle(request)

    client = HttpServiceClient(
        "http://fake.test", retry=FAST_RETRY, transport=httpx.MockTransport(garbage_results)
    )
    sampler = client.create_sampling_client(base_model="fake-base")
    with pytest.raises(errors.CookbookError, match="protobuf result is not a SampleResponse"):
        sampler.sample(types.ModelInput.from_ints([1]), 1, types.SamplingParams(max_tokens=1)).result()
    client.close()


def test_unknown_wire_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="wire must be one of"):
        ClientSettings(base_url="http://x", wire="xml")  # type: ignore[arg-type]
