"""HttpSamplingClient: many requests in flight together, compute_logprobs, pickling."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from cookbook.client import sample_bursts, types
from cookbook.client.errors import RequestFailedError
from cookbook.client.http import HttpSamplingClient, HttpServiceClient
from cookbook.client.http import transport as transport_module
from cookbook.client.http.transport import Transport

from .fake_server import FakeServer, fake_logprob

PROMPT = types.ModelInput.from_ints([0, 1, 2])
PARAMS = types.SamplingParams(max_tokens=3, temperature=0.0)


def test_two_hundred_concurrent_samples_are_all_in_flight_at_once(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    fake.release_when_pending = 200  # results are held until 200 requests have been submitted
    sampler = service.create_sampling_client(base_model="fake-base")

    async def main() -> list[types.SampleResponse]:
        prompts = [types.ModelInput.from_ints([i % 4]) for i in range(200)]
        return await asyncio.gather(*(sampler.sample_async(p, 2, PARAMS) for p in prompts))

    results = asyncio.run(main())
    assert fake.max_pending_samples == 200
    assert len(results) == 200
    for i, res in enumerate(results):
        assert [s.tokens for s in res.sequences] == [
            [(i % 4 + k) % 4 for k in range(3)],
            [(i % 4 + 1 + k) % 4 for k in range(3)],
        ]
    seq_ids = sorted(b["seq_id"] for b in fake.bodies("/asample"))
    assert seq_ids == list(range(1, 201))


def test_samples_asked_for_together_go_in_one_batch_when_the_server_offers_it(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    fake.sample_batch = True
    sampler = service.create_sampling_client(base_model="fake-base")

    async def main() -> list[types.SampleResponse]:
        prompts = [types.ModelInput.from_ints([i % 4]) for i in range(50)]
        return await asyncio.gather(*(sampler.sample_async(p, 2, PARAMS) for p in prompts))

    results = asyncio.run(main())
    batches, lone = fake.bodies("/asample_batch"), fake.bodies("/asample")
    assert batches and len(batches) + len(lone) <= 5  # one batch, unless a loaded machine paused a thread
    seq_ids = [r["seq_id"] for batch in batches for r in batch["requests"]] + [r["seq_id"] for r in lone]
    assert sorted(seq_ids) == list(range(1, 51))
    for i, res in enumerate(results):  # each caller gets the answer to its own prompt
        assert res.sequences[0].tokens == [(i % 4 + k) % 4 for k in range(3)]
    (record,) = [r for r in fake.requests if r.path == "/asample_batch"]
    assert record.headers["x-tinker-sampling-backpressure"] == "1"


def test_one_failed_request_of_a_batch_fails_only_its_caller(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    fake.sample_batch = True
    fake.failing_batch_items = {1}
    sampler = service.create_sampling_client(base_model="fake-base")

    async def main() -> list[types.SampleResponse | BaseException]:
        calls = [sampler.sample_async(types.ModelInput.from_ints([i]), 1, PARAMS) for i in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    first, failed, last = asyncio.run(main())
    assert isinstance(first, types.SampleResponse) and isinstance(last, types.SampleResponse)
    assert isinstance(failed, RequestFailedError) and "item 1 failed" in str(failed)
    assert failed.category == types.RequestErrorCategory.User


def test_a_batch_refused_as_a_whole_is_sent_again_one_request_at_a_time(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    fake.sample_batch = True
    fake.faults["/asample_batch"] = [400]  # e.g. one request in it is bad
    sampler = service.create_sampling_client(base_model="fake-base")

    async def main() -> list[types.SampleResponse]:
        return await asyncio.gather(*(sampler.sample_async(PROMPT, 1, PARAMS) for _ in range(4)))

    assert len(asyncio.run(main())) == 4
    assert fake.attempts["/asample_batch"] == 1
    assert sorted(b["seq_id"] for b in fake.bodies("/asample")) == [1, 2, 3, 4]


def test_a_lone_request_uses_asample_without_asking_for_capabilities(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    fake.sample_batch = True
    sampler = service.create_sampling_client(base_model="fake-base")
    sampler.sample(PROMPT, 1, PARAMS).result()
    assert len(fake.bodies("/asample")) == 1
    assert fake.attempts["/asample_batch"] == 0 and fake.attempts["/get_server_capabilities"] == 0


def test_sample_body_and_backpressure_header(fake: FakeServer, service: HttpServiceClient) -> None:
    sampler = service.create_sampling_client(model_path="tinker://run-1/sampler_weights/s")
    res = sampler.sample(PROMPT, 1, types.SamplingParams(max_tokens=2, stop=["\n"], seed=3)).result()
    assert res.sequences[0].stop_reason == "length"
    (record,) = [r for r in fake.requests if r.path == "/asample"]
    assert record.headers["x-tinker-sampling-backpressure"] == "1"
    assert record.body["sampling_session_id"] == "sampler-0"
    assert record.body["sampling_params"] == {
        "max_tokens": 2,
        "seed": 3,
        "stop": ["\n"],
        "temperature": 1.0,
        "top_k": -1,
        "top_p": 1.0,
    }
    (session,) = fake.bodies("/create_sampling_session")
    assert session["model_path"] == "tinker://run-1/sampler_weights/s" and "base_model" not in session


def test_compute_logprobs(fake: FakeServer, service: HttpServiceClient) -> None:
    sampler = service.create_sampling_client(base_model="fake-base")
    assert sampler.compute_logprobs(PROMPT).result() == [None, fake_logprob(1), fake_logprob(2)]
    body = fake.bodies("/asample")[0]
    assert body["prompt_logprobs"] is True and body["sampling_params"]["max_tokens"] == 1


def test_bad_model_path_is_rejected_before_sending(service: HttpServiceClient) -> None:
    with pytest.raises(ValueError, match="tinker://"):
        service.create_sampling_client(model_path="/tmp/weights")
    with pytest.raises(ValueError, match="model_path or a base_model"):
        service.create_sampling_client()


def test_pickle_carries_connection_and_reconnects_lazily(
    fake: FakeServer, service: HttpServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed = HttpServiceClient("http://fake.test", api_key="k-123", transport=fake.transport())
    sampler = keyed.create_sampling_client(base_model="fake-base")
    sampler.sample(PROMPT, 1, PARAMS).result()
    blob = pickle.dumps(sampler)
    n_requests = len(fake.requests)

    # Stand in for "a new process": the restored client must build its connection from the
    # pickled settings alone; here that connection is routed to the fake server.
    restored_transports: list[Transport] = []

    def fake_shared(settings):  # type: ignore[no-untyped-def]
        transport = Transport(settings, http_transport=fake.transport())
        restored_transports.append(transport)
        return transport

    monkeypatch.setattr("cookbook.client.http.sampling.shared_transport", fake_shared)
    copy = pickle.loads(blob)
    assert isinstance(copy, HttpSamplingClient)
    assert len(fake.requests) == n_requests  # unpickling sends nothing
    assert copy.sampling_session_id == sampler.sampling_session_id  # type: ignore[attr-defined]
    (settings,) = [t.settings for t in restored_transports]
    assert settings.base_url == "http://fake.test" and settings.api_key == "k-123"
    copy.sample(PROMPT, 1, PARAMS).result()
    original_seq, copy_seq = (b["seq_id"] for b in fake.bodies("/asample"))
    assert original_seq == 1 and copy_seq >= 1_000_000_000  # no collision with the original's ids
    assert fake.requests[-1].headers["x-api-key"] == "k-123"
    keyed.close()


def test_unpickled_clients_share_one_transport_per_server() -> None:
    from cookbook.client.http.settings import ClientSettings

    settings = ClientSettings("http://shared.test")
    a = HttpSamplingClient(Transport(settings), "s-1", "fake-base")
    b1, b2 = pickle.loads(pickle.dumps(a)), pickle.loads(pickle.dumps(a))
    assert b1._transport is b2._transport is transport_module.shared_transport(settings)
    assert b1.get_base_model() == "fake-base"  # known without a request


def test_base_model_is_fetched_when_unknown(fake: FakeServer, service: HttpServiceClient) -> None:
    sampler = service.create_sampling_client(model_path="tinker://run-1/sampler_weights/s")
    assert sampler.get_base_model() == "fake-base"
    assert asyncio.run(sampler.get_base_model_async()) == "fake-base"
    assert [r.path for r in fake.requests].count("/samplers/sampler-0") == 1


def test_a_caller_that_waits_sends_its_burst_without_the_quiet_gap(
    fake: FakeServer, service: HttpServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gap no test would sit out: only the caller's blocking `.result()` can send this burst in time.
    monkeypatch.setattr(sample_bursts, "BURST_QUIET_S", 600.0)
    monkeypatch.setattr(sample_bursts, "BURST_MAX_S", 600.0)
    fake.sample_batch = True
    sampler = service.create_sampling_client(base_model="fake-base")
    for round_ in range(2):  # the second burst starts after the first was sent early
        futures = [sampler.sample(types.ModelInput.from_ints([i % 4]), 1, PARAMS) for i in range(5)]
        results = [future.result(timeout=60) for future in futures]
        assert [res.sequences[0].tokens for res in results] == [
            [(i % 4 + k) % 4 for k in range(3)] for i in range(5)
        ]
        batches = fake.bodies("/asample_batch")
        assert [len(batch["requests"]) for batch in batches] == [5] * (round_ + 1)
    assert not fake.bodies("/asample")
