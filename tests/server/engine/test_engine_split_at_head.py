"""A backward pass whose loss has a gradient at few positions runs the output layer's backward only there.

SFT prompts, a judge's comparison (one weighted position) and RL prompts carry zero loss inputs, so
their logprobs get no gradient; the engine then computes every logprob without a graph, takes the
loss's gradient, and backpropagates the output layer at the positions where it is nonzero. Results
(loss, logprobs, every gradient, for LoRA with the output layer adapted and for full weights) must
match the one-graph pass that a chunk with mostly weighted positions takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cookbook.client import types
from server_stub.torch_engine import TorchEngine
from server_stub.training import forward_backward

from .engine_helpers import TINY, forward_backward_counting_head, fwd, grads_of, rl_datum, sft_datum

PROMPT_THEN_ANSWER = [
    sft_datum([(3 * i + j) % 250 + 1 for j in range(12 + i)], [0.0] * (8 + i) + [1.0, 0.5, 2.0])
    for i in range(4)
]
LAST_POSITION_ONLY = [
    sft_datum([(5 * i + j) % 250 + 1 for j in range(10)], [0.0] * 8 + [1.0]) for i in range(4)
]
RL_ANSWERS = [
    rl_datum([(7 * i + j) % 250 + 1 for j in range(11)], [-2.0] * 10, [0.0] * 6 + [1.0 - i] * 4)
    for i in range(4)
]
CASES = [
    ("cross_entropy", PROMPT_THEN_ANSWER),
    ("cross_entropy", LAST_POSITION_ONLY),
    ("importance_sampling", RL_ANSWERS),
    ("ppo", RL_ANSWERS),
]


def _engine(tmp_path: Path, name: str, lora: types.LoraConfig | None) -> TorchEngine:
    engine = TorchEngine(tmp_path / name, device="cpu")
    engine.pass_token_budget = None
    engine.create_model("m", TINY, lora, None)
    if lora is not None:  # a trained adapter, so the output layer's LoRA is not zero
        engine.forward_backward("m", fwd(PROMPT_THEN_ANSWER), backward=True)
        engine.optim_step("m", types.AdamParams(learning_rate=5e-2))
        engine._models["m"].module().zero_grad()
    return engine


@pytest.mark.parametrize(
    "lora", [types.LoraConfig(rank=4, train_unembed=True, seed=3), None], ids=["lora", "full"]
)
@pytest.mark.parametrize(("loss_fn", "data"), CASES, ids=["sft", "judge", "is", "ppo"])
def test_the_split_pass_matches_the_one_graph_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lora: types.LoraConfig | None, loss_fn: str, data
) -> None:
    split, whole = _engine(tmp_path, "split", lora), _engine(tmp_path, "whole", lora)
    got, backward_positions = forward_backward_counting_head(split, data, loss_fn, backward=True)
    monkeypatch.setattr(forward_backward, "ACTIVE_FRACTION_TO_SPLIT", -1.0)  # never split
    expected = whole.forward_backward("m", fwd(data, loss_fn), backward=True)
    inputs = "weights" if loss_fn == "cross_entropy" else "advantages"
    active = sum(sum(v != 0 for v in d.loss_fn_inputs[inputs].data) for d in data)
    # The output layer's graph covers only those positions (fewer for ppo: a clipped ratio has no gradient).
    assert backward_positions[-1] == active if loss_fn != "ppo" else 0 < backward_positions[-1] < active
    assert got.metrics["loss:sum"] == pytest.approx(expected.metrics["loss:sum"], rel=1e-6)
    for a, b in zip(expected.loss_fn_outputs, got.loss_fn_outputs, strict=True):
        assert b["logprobs"].data == pytest.approx(a["logprobs"].data, rel=1e-6, abs=1e-6)
    for name, grad in grads_of(whole, "m").items():
        other = grads_of(split, "m")[name]
        assert grad is not None and other is not None, name
        assert torch.allclose(grad, other, rtol=1e-4, atol=1e-6 * float(grad.abs().max())), name


def test_a_pass_with_no_weighted_position_still_gives_every_tensor_a_zero_gradient(tmp_path: Path) -> None:
    engine = _engine(tmp_path, "e", None)
    unweighted = [sft_datum(list(range(1, 9)), [0.0] * 7)]
    engine.forward_backward("m", fwd(unweighted), backward=True)
    grads = grads_of(engine, "m")
    assert grads and all(g is not None and not g.any() for g in grads.values())


def test_mostly_weighted_chunks_take_the_one_graph_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(tmp_path, "e", None)
    calls: list[int] = []
    original = forward_backward._pass_split_at_head
    monkeypatch.setattr(
        forward_backward, "_pass_split_at_head", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    engine.forward_backward("m", fwd([sft_datum(list(range(1, 9)))]), backward=True)
    assert calls == []
    engine.forward_backward("m", fwd(LAST_POSITION_ONLY), backward=True)
    assert calls == [1]
