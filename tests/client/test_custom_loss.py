"""forward_backward_custom: the cross_entropy weights sent are -dL/dlogp of the user's loss."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from cookbook.client import types
from cookbook.client.http import HttpServiceClient

from .fake_server import FakeServer, fake_logprob

SEQS = [[3, 1, 4, 1, 5], [9, 2, 6]]


def make_data() -> list[types.Datum]:
    return [
        types.Datum(model_input=types.ModelInput.from_ints(s[:-1]), loss_fn_inputs={"target_tokens": s[1:]})
        for s in SEQS
    ]


def loss_numpy(logprobs: list[np.ndarray]) -> float:
    """A non-linear loss mixing datums: softplus of a pairwise margin plus a square."""
    s = [lp.sum() for lp in logprobs]
    return float(np.log1p(np.exp(-(s[0] - 0.5 * s[1]))) + (logprobs[1] ** 2).sum())


def loss_torch(
    data: list[types.Datum], logprobs: list[torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    s = [lp.sum() for lp in logprobs]
    loss = torch.nn.functional.softplus(-(s[0] - 0.5 * s[1])) + (logprobs[1] ** 2).sum()
    return loss, {"margin": (s[0] - 0.5 * s[1]).detach(), "pairs": 1.0}  # tensors are accepted


def finite_difference_grads(logprobs: list[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    grads = []
    for i, lp in enumerate(logprobs):
        g = np.zeros_like(lp)
        for t in range(len(lp)):
            up = [x.copy() for x in logprobs]
            down = [x.copy() for x in logprobs]
            up[i][t] += eps
            down[i][t] -= eps
            g[t] = (loss_numpy(up) - loss_numpy(down)) / (2 * eps)
        grads.append(g)
    return grads


def test_weights_are_minus_the_loss_gradient(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    out = tc.forward_backward_custom(make_data(), loss_torch).result()

    forward_body = fake.bodies("/forward")[0]["forward_input"]
    assert forward_body["loss_fn"] == "cross_entropy"
    assert [d["loss_fn_inputs"]["weights"]["data"] for d in forward_body["data"]] == [[0.0] * 4, [0.0] * 2]

    logprobs = [np.array([fake_logprob(t) for t in s[1:]], dtype=np.float64) for s in SEQS]
    expected = finite_difference_grads(logprobs)
    backward_body = fake.bodies("/forward_backward")[0]["forward_backward_input"]
    assert backward_body["loss_fn"] == "cross_entropy"
    for datum, grad, seq in zip(backward_body["data"], expected, SEQS, strict=True):
        assert datum["loss_fn_inputs"]["target_tokens"]["data"] == seq[1:]
        np.testing.assert_allclose(datum["loss_fn_inputs"]["weights"]["data"], -grad, rtol=1e-4, atol=1e-6)
    assert backward_body["data"][0]["loss_fn_inputs"]["weights"]["data"] != [0.0] * 4

    # Server metrics keep their name:reduction keys; the user's are added by name.
    assert out.metrics["loss:sum"] == 1.5
    assert out.metrics["pairs"] == 1.0
    assert out.metrics["margin"] == pytest.approx(logprobs[0].sum() - 0.5 * logprobs[1].sum(), rel=1e-5)
    # The forward (seq 1) precedes the cross_entropy pass (seq 2) in the model's stream.
    assert [r.body["seq_id"] for r in fake.requests if r.path in ("/forward", "/forward_backward")] == [1, 2]


def test_async_variant_and_unused_logprobs_get_zero_weight(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    def first_only(
        data: list[types.Datum], logprobs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return -logprobs[0].sum(), {}

    async def main() -> types.ForwardBackwardOutput:
        tc = await service.create_lora_training_client_async("fake-base", rank=8)
        fut = await tc.forward_backward_custom_async(make_data(), first_only)
        return await fut

    asyncio.run(main())
    weights = [
        d["loss_fn_inputs"]["weights"]["data"]
        for d in fake.bodies("/forward_backward")[0]["forward_backward_input"]["data"]
    ]
    assert weights == [[1.0] * 4, [0.0] * 2]  # L = -sum(lp) is plain cross_entropy with weight 1


def test_a_loss_without_gradient_is_a_clear_error(fake: FakeServer, service: HttpServiceClient) -> None:
    tc = service.create_lora_training_client("fake-base", rank=8)
    with pytest.raises(ValueError, match="does not depend on the logprobs"):
        tc.forward_backward_custom(make_data(), lambda d, lps: (torch.tensor(1.0), {}))
    with pytest.raises(ValueError, match="scalar"):
        tc.forward_backward_custom(make_data(), lambda d, lps: (lps[0], {}))
    assert fake.bodies("/forward_backward") == []
