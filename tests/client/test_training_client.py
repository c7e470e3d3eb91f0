"""HttpTrainingClient: seq ids, ordered submissions, non-blocking futures, polling, errors."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cookbook.client import errors, types
from cookbook.client.http import HttpServiceClient
from cookbook.client.loop import background_loop

from .fake_server import FakeServer, fake_logprob


def datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def submitted_seq_ids(fake: FakeServer) -> list[int]:
    return [
        r.body["seq_id"]
        for r in fake.requests
        if r.body and "seq_id" in r.body and r.path not in ("/asample",)
    ]


def test_seq_ids_increase_and_posts_leave_in_order_under_concurrency(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    fake.submit_jitter_s = 0.003  # a client that sent in parallel would be recorded out of order
    tc = service.create_lora_training_client("fake-base", rank=8)
    futures: dict[int, object] = {}
    lock = threading.Lock()

    def worker(k: int) -> None:
        for _ in range(10):
            fut = tc.forward_backward([datum([1, 2, 3])], "cross_entropy")
            opt = tc.optim_step(types.AdamParams(learning_rate=0.001 * k))
            with lock:
                futures[id(fut)] = fut
                futures[id(opt)] = opt

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [f.result() for f in futures.values()]  # type: ignore[attr-defined]
    assert submitted_seq_ids(fake) == list(range(1, 81))
    # Each future got the result of its own request (the fake echoes the seq id).
    seen = sorted(
        int(r.metrics["seq:unique"] if "seq:unique" in r.metrics else r.metrics["seq"]) for r in results
    )
    assert seen == list(range(1, 81))


def test_calls_return_futures_before_the_server_answers(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    hold = background_loop().run(_make_event())
    fake.hold_submissions = hold
    fwd = tc.forward_backward([datum([5, 6, 7])], "cross_entropy")
    opt = tc.optim_step(types.AdamParams())
    assert not fwd.done() and not opt.done()
    background_loop().loop.call_soon_threadsafe(hold.set)
    out = fwd.result()
    assert [lp for lp in out.loss_fn_outputs[0]["logprobs"].data] == pytest.approx(
        [fake_logprob(6), fake_logprob(7)]
    )
    assert opt.result().metrics == {"seq": 2.0, "lr": 1e-4}


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def test_try_again_answers_are_re_polled(fake: FakeServer, service: HttpServiceClient) -> None:
    fake.try_again = 4
    tc = service.create_lora_training_client("fake-base", rank=8)
    out = tc.forward([datum([1, 2])], "cross_entropy").result()
    assert out.metrics["loss:sum"] == 1.5
    fwd_id = [rid for rid, n in fake.polls.items()][-1]
    assert fake.polls[fwd_id] == 5


def test_failed_operation_raises_request_failed_error_with_category(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    fake.failures["/optim_step"] = {"error": "learning_rate went negative", "category": "user"}
    with pytest.raises(errors.RequestFailedError, match="learning_rate went negative") as info:
        tc.optim_step(types.AdamParams()).result()
    assert info.value.category == types.RequestErrorCategory.User
    assert info.value.is_user_error
    assert info.value.request_id is not None and info.value.request_id.startswith("req-")


def test_rejected_submission_raises_typed_error_and_later_calls_still_run(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    fake.faults["/forward_backward"] = [400]
    with pytest.raises(errors.BadRequestError, match="injected 400") as info:
        tc.forward_backward([datum([1, 2])], "cross_entropy").result()
    assert info.value.field == "injected.field"
    assert tc.optim_step(types.AdamParams()).result().metrics == {"seq": 2.0, "lr": 1e-4}


def test_retried_submission_keeps_its_seq_id(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    fake.faults["/optim_step"] = [503, 503]
    assert tc.optim_step(types.AdamParams()).result().metrics == {"seq": 1.0, "lr": 1e-4}
    assert fake.attempts["/optim_step"] == 3


def test_invalid_arguments_fail_at_call_time_without_using_a_seq_id(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    with pytest.raises(ValueError, match="loss_fn"):
        tc.forward_backward([datum([1, 2])], "not_a_loss")  # type: ignore[arg-type]
    assert tc.optim_step(types.AdamParams()).result().metrics == {"seq": 1.0, "lr": 1e-4}


def test_checkpoint_calls_send_the_wire_bodies(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    assert tc.save_state("s1", ttl_seconds=60).result().path == "tinker://model-0/weights/s1"
    assert tc.load_state("tinker://model-0/weights/s1").result().model_id == "model-0"
    tc.load_state_with_optimizer("tinker://model-0/weights/s1").result()
    assert tc.save_weights_for_sampler("p1").result().path == "tinker://model-0/sampler_weights/p1"
    snapshot = tc.save_weights_and_get_sampling_client()
    assert snapshot.sampling_session_id == "snap-model-0-5"  # type: ignore[attr-defined]
    assert snapshot.get_base_model() == "fake-base"
    save = fake.bodies("/save_weights")[0]
    assert save == {
        "model_id": "model-0",
        "path": "s1",
        "seq_id": 1,
        "ttl_seconds": 60,
        "overwrite": False,
        "type": "save_weights",
    }
    assert [b["optimizer"] for b in fake.bodies("/load_weights")] == [False, True]
    named, unnamed = fake.bodies("/save_weights_for_sampler")
    assert named["path"] == "p1" and "sampling_session_seq_id" not in named
    assert "path" not in unnamed and unnamed["sampling_session_seq_id"] == 0
    assert submitted_seq_ids(fake) == [1, 2, 3, 4, 5]


def test_async_twins_return_the_same_kind_of_future(fake: FakeServer, service: HttpServiceClient) -> None:
    async def main() -> tuple[types.ForwardBackwardOutput, types.GetInfoResponse, str]:
        tc = await service.create_lora_training_client_async("fake-base", rank=8)
        fut = await tc.forward_backward_async([datum([1, 2, 3])], "cross_entropy")
        out = await fut.result_async()
        info = await tc.get_info_async()
        sampler = await tc.save_weights_and_get_sampling_client_async()
        return out, info, sampler.sampling_session_id  # type: ignore[attr-defined]

    out, info, sampler_id = asyncio.run(main())
    assert len(out.loss_fn_outputs) == 1
    assert info.model_data.model_name == "fake-base"
    assert sampler_id == "snap-model-0-2"


def test_tokenizer_fetched_once_and_shared(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    tok = tc.get_tokenizer()
    assert tok.encode("hello world") == [0, 1]
    assert tok.eos_token_id == 3
    assert service.get_tokenizer("fake-base") is tok
    assert len(fake.bodies("/get_tokenizer")) == 1


def test_nan_is_rejected_before_sending(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    bad = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2]),
        loss_fn_inputs={"target_tokens": [2, 3], "weights": [1.0, float("nan")]},
    )
    with pytest.raises(errors.InvalidInputError, match=r"data\[1\]\.loss_fn_inputs\.weights\[1\] is nan"):
        tc.forward_backward([datum([1, 2]), bad], "cross_entropy")
    with pytest.raises(errors.InvalidInputError, match=r"adam_params\.learning_rate is inf"):
        tc.optim_step(types.AdamParams(learning_rate=float("inf")))
    assert fake.bodies("/forward_backward") == [] and fake.bodies("/optim_step") == []
    assert tc.optim_step(types.AdamParams()).result().metrics == {"seq": 1.0, "lr": 1e-4}
