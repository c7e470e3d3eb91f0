"""Training through the real server: learning, pipelining, accumulation, custom losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cookbook.client import types
from cookbook.client.http import HttpServiceClient

from .real_helpers import BASE_MODEL, TEXTS, batches, linear_adam, probe_logprobs, text_datum


@pytest.fixture
def tokenizer(real_service: HttpServiceClient):  # type: ignore[no-untyped-def]
    return real_service.get_tokenizer(BASE_MODEL)


def test_loss_falls_over_optimizer_steps(real_service: HttpServiceClient, tokenizer) -> None:  # type: ignore[no-untyped-def]
    tc = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    batch = [text_datum(tokenizer, t) for t in TEXTS[:3]]
    losses = []
    for _ in range(5):
        fwd = tc.forward_backward(batch, "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=3e-3))
        losses.append(fwd.result().metrics["loss:sum"])
    assert losses[-1] < 0.8 * losses[0], losses
    logprobs = [o["logprobs"].to_numpy() for o in fwd.result().loss_fn_outputs]
    assert [len(lp) for lp in logprobs] == [len(d.loss_fn_inputs["target_tokens"].data) for d in batch]


def test_pipelined_submission_equals_sequential(real_service: HttpServiceClient, tokenizer) -> None:  # type: ignore[no-untyped-def]
    steps = batches(tokenizer, 4)
    adam = types.AdamParams(learning_rate=2e-3)
    sequential = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    seq_losses = []
    for batch in steps:
        seq_losses.append(sequential.forward_backward(batch, "cross_entropy").result().metrics["loss:sum"])
        sequential.optim_step(adam).result()

    pipelined = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    pending = []
    for batch in steps:  # step k+1 is submitted before step k is read
        pending.append((pipelined.forward_backward(batch, "cross_entropy"), pipelined.optim_step(adam)))
    pipe_losses = [fwd.result().metrics["loss:sum"] for fwd, opt in pending]
    for _, opt in pending:
        opt.result()

    assert pipe_losses == pytest.approx(seq_losses, rel=1e-6)
    assert seq_losses[-1] != seq_losses[0]
    np.testing.assert_allclose(
        probe_logprobs(pipelined, tokenizer), probe_logprobs(sequential, tokenizer), rtol=0, atol=1e-6
    )


def test_two_forward_backward_calls_accumulate_like_one(real_service: HttpServiceClient, tokenizer) -> None:  # type: ignore[no-untyped-def]
    first = [text_datum(tokenizer, TEXTS[0]), text_datum(tokenizer, TEXTS[1])]
    second = [text_datum(tokenizer, TEXTS[2])]
    split = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    union = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    before = probe_logprobs(split, tokenizer)

    a = split.forward_backward(first, "cross_entropy")
    b = split.forward_backward(second, "cross_entropy")
    split.optim_step(linear_adam()).result()
    both = union.forward_backward(first + second, "cross_entropy")
    union.optim_step(linear_adam()).result()

    assert a.result().metrics["loss:sum"] + b.result().metrics["loss:sum"] == pytest.approx(
        both.result().metrics["loss:sum"], rel=1e-5
    )
    after_split, after_union = probe_logprobs(split, tokenizer), probe_logprobs(union, tokenizer)
    assert np.abs(after_split - before).max() > 1e-3  # the step did something
    np.testing.assert_allclose(after_split, after_union, rtol=0, atol=2e-5)


def test_custom_loss_matches_the_equivalent_cross_entropy(real_service: HttpServiceClient, tokenizer) -> None:  # type: ignore[no-untyped-def]
    scales = [0.5, -0.25, 2.0]  # per-datum weights, one negative
    plain = [text_datum(tokenizer, t) for t in TEXTS[:3]]
    scaled = [text_datum(tokenizer, t, s) for t, s in zip(TEXTS[:3], scales, strict=True)]

    def weighted_nll(
        data: list[types.Datum], logprobs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss = sum(-s * lp.sum() for s, lp in zip(scales, logprobs, strict=True))
        return loss, {"weighted_nll": float(loss.detach())}  # type: ignore[union-attr]

    custom = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    direct = real_service.create_lora_training_client(BASE_MODEL, rank=0)
    custom_out = custom.forward_backward_custom(plain, weighted_nll).result()
    custom.optim_step(linear_adam()).result()
    direct_out = direct.forward_backward(scaled, "cross_entropy").result()
    direct.optim_step(linear_adam()).result()

    assert custom_out.metrics["weighted_nll"] == pytest.approx(direct_out.metrics["loss:sum"], rel=1e-5)
    assert "loss:sum" in custom_out.metrics
    np.testing.assert_allclose(
        probe_logprobs(custom, tokenizer), probe_logprobs(direct, tokenizer), rtol=0, atol=2e-5
    )
