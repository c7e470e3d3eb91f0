"""Bad inputs raise typed errors naming the problem, while another client keeps training."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cookbook.client import errors, types
from cookbook.client.http import HttpServiceClient, HttpTrainingClient
from cookbook.client.loop import background_loop

from .real_helpers import BASE_MODEL, TEXTS, text_datum


def raw_datum(inputs: list[int], targets: list[int], weights: list[float]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(inputs),
        loss_fn_inputs={"target_tokens": targets, "weights": weights},
    )


class BackgroundTrainer(threading.Thread):
    """Another user of the server: trains full weights for a few steps, recording losses."""

    def __init__(self, service: HttpServiceClient):
        super().__init__(daemon=True)
        tokenizer = service.get_tokenizer(BASE_MODEL)
        self.client = service.create_lora_training_client(BASE_MODEL, rank=0)
        self.batch = [text_datum(tokenizer, t) for t in TEXTS[:3]]
        self.losses: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for _ in range(4):
                fwd = self.client.forward_backward(self.batch, "cross_entropy")
                self.client.optim_step(types.AdamParams(learning_rate=3e-3)).result()
                self.losses.append(fwd.result().metrics["loss:sum"])
        except BaseException as exc:  # reported by the test
            self.error = exc


def expect(error_type: type[Exception], *fragments: str) -> Callable[[Callable[[], object]], None]:
    def check(call: Callable[[], object]) -> None:
        with pytest.raises(error_type) as info:
            call()
        for fragment in fragments:
            assert fragment in str(info.value), (fragment, str(info.value))

    return check


def test_bad_inputs_fail_clearly_while_another_client_trains(real_service: HttpServiceClient) -> None:
    trainer = BackgroundTrainer(real_service)
    trainer.start()
    tc = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    transport = real_service._transport
    ok = raw_datum([1, 2, 3], [2, 3, 4], [1.0, 1.0, 1.0])

    expect(errors.BadRequestError, "malformed JSON")(
        lambda: background_loop().run(transport.post("/forward_backward", b"{not json"))
    )
    expect(errors.BadRequestError, "forward_backward_input")(
        lambda: background_loop().run(transport.post("/forward_backward", b'{"model_id": "x", "seq_id": 1}'))
    )
    ghost = HttpTrainingClient(real_service._session, "run-00000000", BASE_MODEL)
    expect(errors.NotFoundError, "run-00000000")(
        lambda: ghost.forward_backward([ok], "cross_entropy").result()
    )
    expect(errors.NotFoundError, "tinker://run-00000000/weights/nope")(
        lambda: tc.load_state("tinker://run-00000000/weights/nope").result()
    )
    expect(errors.NotFoundError, "sampler_weights/nope")(
        lambda: real_service.create_sampling_client(model_path="tinker://run-00000000/sampler_weights/nope")
    )
    expect(errors.NotFoundError, "no-such-model")(
        lambda: real_service.create_lora_training_client("no-such-model", rank=0)
    )
    expect(errors.BadRequestError, "token id 600", "vocabulary", "target_tokens")(
        lambda: tc.forward_backward([raw_datum([1, 2], [2, 600], [1.0, 1.0])], "cross_entropy").result()
    )
    expect(errors.BadRequestError, "weights", "shape [2] != target_tokens shape [3]")(
        lambda: tc.forward_backward([raw_datum([1, 2, 3], [2, 3, 4], [1.0, 1.0])], "cross_entropy").result()
    )
    expect(errors.InvalidInputError, "weights[1] is nan")(
        lambda: tc.forward_backward([raw_datum([1, 2], [2, 3], [1.0, float("nan")])], "cross_entropy")
    )
    expect(errors.BadRequestError, "600", "context length 512")(
        lambda: tc.forward_backward([raw_datum([1] * 600, [2] * 600, [1.0] * 600)], "cross_entropy").result()
    )
    sampler = real_service.create_sampling_client(base_model=BASE_MODEL)
    expect(errors.BadRequestError, "prompt length 600", "context length 512")(
        lambda: sampler.sample(
            types.ModelInput.from_ints([1] * 600), 1, types.SamplingParams(max_tokens=4)
        ).result()
    )
    expect(errors.BadRequestError, "rank")(
        lambda: real_service.create_lora_training_client(BASE_MODEL, rank=3)
    )
    tc.save_state("once").result()
    with pytest.raises(errors.RequestFailedError, match="already exists") as failed:
        tc.save_state("once").result()
    assert failed.value.category == types.RequestErrorCategory.User

    # The model that saw all those errors still trains.
    out = tc.forward_backward([ok], "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0
    tc.optim_step(types.AdamParams()).result()

    trainer.join()
    assert trainer.error is None, trainer.error
    assert len(trainer.losses) == 4 and trainer.losses[-1] < trainer.losses[0]
