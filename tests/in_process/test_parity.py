"""The in-process client gives the numbers the HTTP client gives from the bundled server, and its errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from cookbook.client import SamplingClient, ServiceClient, errors, types
from cookbook.client.http import HttpServiceClient
from cookbook.client.in_process import InProcessServiceClient
from server_stub.sampling import FP32_LOGPROB_ATOL
from tests.client.real_helpers import (
    BASE_MODEL,
    PROBE,
    TEXTS,
    batches,
    linear_adam,
    probe_logprobs,
    text_datum,
)

PROMPTS = [text[: text.index("Assistant:") + len("Assistant:")] for text in TEXTS]


def sft_like_run(service: ServiceClient) -> dict[str, object]:
    """A few pipelined SFT steps, a custom-loss step, then the weights' fingerprint and a sampling burst."""
    tokenizer = service.get_tokenizer(BASE_MODEL)
    tc = service.create_lora_training_client(BASE_MODEL, rank=0)
    pending = [
        (tc.forward_backward(batch, "cross_entropy"), tc.optim_step(linear_adam(3e-3)))
        for batch in batches(tokenizer, 4, size=3)
    ]
    losses = [fwd.result().metrics["loss:sum"] for fwd, _ in pending]
    steps = [opt.result().metrics for _, opt in pending]

    def margin_loss(
        data: list[types.Datum], logprobs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss = -torch.nn.functional.logsigmoid(logprobs[0].sum() - logprobs[1].sum())
        return loss, {"margin_loss": float(loss.detach())}

    pair = [text_datum(tokenizer, TEXTS[0]), text_datum(tokenizer, TEXTS[1])]
    custom = tc.forward_backward_custom(pair, margin_loss).result()
    tc.optim_step(linear_adam(1e-3)).result()

    sampler = tc.save_weights_and_get_sampling_client()
    burst = [
        sampler.sample(
            types.ModelInput.from_ints(tokenizer.encode(prompt)),
            2,
            types.SamplingParams(max_tokens=8, temperature=1.0, seed=100 + i),
        )
        for i, prompt in enumerate(PROMPTS * 2)
    ]
    prompt_logprobs = sampler.compute_logprobs(types.ModelInput.from_ints(tokenizer.encode(PROBE))).result()
    return {
        "losses": losses,
        "optim": steps,
        "custom": custom.metrics,
        "probe": probe_logprobs(tc, tokenizer),
        "samples": [future.result().sequences for future in burst],
        "prompt_logprobs": prompt_logprobs,
    }


def test_training_and_a_sampling_burst_give_the_numbers_http_gives(
    http: HttpServiceClient, in_process: InProcessServiceClient
) -> None:
    batches_before = len(in_process.server.scheduler.sample_batch_sizes)
    over_http, here = sft_like_run(http), sft_like_run(in_process)

    assert here["losses"] == pytest.approx(over_http["losses"], rel=1e-6)
    assert over_http["losses"][-1] != over_http["losses"][0]  # it trained
    for ours, theirs in zip(here["optim"], over_http["optim"], strict=True):  # type: ignore[call-overload]
        assert ours == pytest.approx(theirs, rel=1e-5)
    assert here["custom"] == pytest.approx(over_http["custom"], rel=1e-5)
    np.testing.assert_allclose(here["probe"], over_http["probe"], rtol=0, atol=1e-6)  # type: ignore[arg-type]

    for ours, theirs in zip(here["samples"], over_http["samples"], strict=True):  # type: ignore[call-overload]
        assert [s.tokens for s in ours] == [s.tokens for s in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=FP32_LOGPROB_ATOL)
    assert here["prompt_logprobs"][0] is None
    assert here["prompt_logprobs"][1:] == pytest.approx(
        over_http["prompt_logprobs"][1:], abs=FP32_LOGPROB_ATOL
    )  # type: ignore[index]

    new_batches = list(in_process.server.scheduler.sample_batch_sizes)[batches_before:]
    assert max(new_batches) > 1  # the concurrent burst was batched by the scheduler, as on the server


def bad_calls(service: ServiceClient) -> dict[str, Callable[[], object]]:
    """Calls a user gets wrong, each run to its result."""
    tokenizer = service.get_tokenizer(BASE_MODEL)
    tc = service.create_lora_training_client(BASE_MODEL, rank=0)
    sampler = service.create_sampling_client(base_model=BASE_MODEL)
    outside = types.Datum(
        model_input=types.ModelInput.from_ints([10**6]),
        loss_fn_inputs={"target_tokens": [1], "weights": [1.0]},
    )
    good = [text_datum(tokenizer, TEXTS[0])]
    tc.save_state("taken").result()
    return {
        "unknown base model": lambda: service.create_lora_training_client("no-such-model", rank=0),
        "token outside the vocabulary": lambda: tc.forward_backward([outside], "cross_entropy").result(),
        "negative learning rate": lambda: tc.optim_step(types.AdamParams(learning_rate=-1.0)).result(),
        "score loss without a reward head": lambda: tc.forward(good, "reward_score").result(),
        "unknown checkpoint": lambda: tc.load_state("tinker://run-nope/weights/x").result(),
        "checkpoint name taken": lambda: tc.save_state("taken").result(),
        "bad checkpoint name": lambda: tc.save_state("../escape").result(),
        "empty prompt": lambda: sampler.sample(
            types.ModelInput.from_ints([]), 1, types.SamplingParams()
        ).result(),
        "too many samples": lambda: sampler.sample(
            types.ModelInput.from_ints([5]), 10**6, types.SamplingParams(max_tokens=1)
        ).result(),
        "unknown sampler checkpoint": lambda: service.create_sampling_client(
            model_path="tinker://run-nope/sampler_weights/x"
        ),
        "a bad prompt in a burst": lambda: burst_with_a_bad_prompt(sampler),
        "a good call after the bad ones": lambda: tc.forward_backward(good, "cross_entropy").result().metrics,
    }


def burst_with_a_bad_prompt(sampler: SamplingClient) -> tuple[int, ...]:
    """Three requests made together, the middle one bad: the tokens each good one got, the bad one's status."""
    params = types.SamplingParams(max_tokens=4, temperature=0.0)
    prompts = [[5, 6], [10**6], [7, 8]]
    futures = [sampler.sample(types.ModelInput.from_ints(p), 1, params) for p in prompts]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(len(future.result().sequences[0].tokens))
        except errors.APIStatusError as exc:
            outcomes.append(exc.status_code)
    return tuple(outcomes)


def outcome(call: Callable[[], object]) -> tuple[type[BaseException] | None, object]:
    try:
        value = call()
    except errors.CookbookError as exc:
        category = exc.category if isinstance(exc, errors.RequestFailedError) else getattr(exc, "field", None)
        return type(exc), category
    return None, value


def test_bad_input_raises_the_typed_errors_http_raises(
    http: HttpServiceClient, in_process: InProcessServiceClient
) -> None:
    over_http = {name: outcome(call) for name, call in bad_calls(http).items()}
    here = {name: outcome(call) for name, call in bad_calls(in_process).items()}
    for name, (error, detail) in over_http.items():
        if error is None:
            assert here[name][0] is None and here[name][1] == pytest.approx(detail), name
        else:
            assert here[name] == (error, detail), name
    kinds = {name: error for name, (error, _) in here.items()}
    assert kinds["unknown base model"] is errors.NotFoundError
    assert kinds["token outside the vocabulary"] is errors.BadRequestError
    assert kinds["empty prompt"] is errors.BadRequestError
    assert kinds["a good call after the bad ones"] is None
    assert here["a bad prompt in a burst"] == (None, (4, 400, 4))
