"""forward/forward_backward semantics, AdamW against torch, full-weight learning."""

from __future__ import annotations

import pytest
import torch

from cookbook.client import types
from server_stub.torch_engine import TorchEngine
from server_stub.training.adamw import AdamW

from .engine_helpers import TINY, fwd, grads_of, sft_datum, weights_of

DATA = [
    sft_datum([5, 17, 99, 230, 41, 8, 77]),
    sft_datum([12, 400, 3, 3, 61]),
    sft_datum([250, 251, 9, 14, 88, 101, 7, 66, 500, 1], [0.5, -1.0, 2.0, 0.0, 1.0, 1.0, 0.25, 3.0, -0.5]),
]


def test_gradients_accumulate_across_calls(engine: TorchEngine) -> None:
    engine.create_model("split", TINY, None, None)
    engine.create_model("union", TINY, None, None)
    a = engine.forward_backward("split", fwd(DATA[:1]), backward=True)
    b = engine.forward_backward("split", fwd(DATA[1:]), backward=True)
    both = engine.forward_backward("union", fwd(DATA), backward=True)
    assert a.metrics["loss:sum"] + b.metrics["loss:sum"] == pytest.approx(both.metrics["loss:sum"], rel=1e-5)
    split, union = grads_of(engine, "split"), grads_of(engine, "union")
    for name in union:
        assert torch.allclose(split[name], union[name], rtol=1e-4, atol=1e-6), name


def test_forward_does_not_touch_gradients(engine: TorchEngine) -> None:
    engine.create_model("m", TINY, None, None)
    engine.forward_backward("m", fwd(DATA), backward=False)
    assert all(g is None for g in grads_of(engine, "m").values())
    engine.forward_backward("m", fwd(DATA[:1]), backward=True)
    before = grads_of(engine, "m")
    out = engine.forward_backward("m", fwd(DATA), backward=False)
    after = grads_of(engine, "m")
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert [len(o["logprobs"].data) for o in out.loss_fn_outputs] == [6, 4, 9]
    assert all(o["logprobs"].dtype == "float32" for o in out.loss_fn_outputs)


def test_optim_step_applies_and_clears_gradients(engine: TorchEngine) -> None:
    engine.create_model("m", TINY, None, None)
    before = weights_of(engine, "m")
    engine.forward_backward("m", fwd(DATA), backward=True)
    metrics = engine.optim_step("m", types.AdamParams(learning_rate=1e-3)).metrics
    assert metrics is not None and metrics["grad_norm"] > 0 and metrics["update_norm"] > 0
    assert all(":" not in key for key in metrics)
    assert all(g is None for g in grads_of(engine, "m").values())
    after = weights_of(engine, "m")
    assert all(not torch.equal(before[n], after[n]) for n in before)


def test_full_weight_training_makes_the_loss_fall(engine: TorchEngine, encode) -> None:
    engine.create_model("m", TINY, types.LoraConfig(rank=0), None)
    data = [
        sft_datum(encode(f"User: What is {a} plus {b}?\n\nAssistant: {a} plus {b} is {a + b}.\n\nUser:"))
        for a, b in ((1, 2), (3, 4), (5, 6), (2, 2))
    ]
    losses = []
    for _ in range(25):
        losses.append(engine.forward_backward("m", fwd(data), backward=True).metrics["loss:sum"])
        engine.optim_step("m", types.AdamParams(learning_rate=3e-3, eps=1e-8))
    assert losses[-1] < 0.3 * losses[0]


def _toy_params(seed: int) -> dict[str, torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.nn.Parameter(torch.randn(6, 5, generator=gen)),
        "b": torch.nn.Parameter(torch.randn(5, generator=gen)),
    }


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_adamw_matches_torch(clip: float) -> None:
    ours, theirs = _toy_params(0), _toy_params(0)
    optimizer = AdamW(ours)
    reference = torch.optim.AdamW(theirs.values(), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    data = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    for step, lr in enumerate((1e-2, 3e-3, 2e-2, 5e-3, 1e-2)):
        for params in (ours, theirs):
            (torch.tanh(data @ params["w"] + params["b"]) ** 2).sum().backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(list(theirs.values()), clip)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
        reference.zero_grad()
        metrics = optimizer.step(
            types.AdamParams(
                learning_rate=lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip_norm=clip
            )
        )
        assert metrics["step"] == step + 1
        for name in ours:
            assert torch.allclose(ours[name], theirs[name], rtol=1e-6, atol=1e-7), (step, name)
    assert all(p.grad is None for p in ours.values())


def test_adamw_keeps_fp32_masters_for_bf16_parameters() -> None:
    """Updates far below bf16 resolution still accumulate in the master copy."""
    param = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    optimizer = AdamW({"p": param})
    for _ in range(20):
        param.grad = torch.ones(4, dtype=torch.bfloat16)
        optimizer.step(types.AdamParams(learning_rate=1e-4))
    master = optimizer.state["master"]["p"]
    assert master.dtype == torch.float32
    assert float(master[0]) == pytest.approx(1.0 - 20e-4, abs=1e-6)
    assert param.dtype == torch.bfloat16 and float(param.detach()[0]) == pytest.approx(1.0 - 20e-4, abs=4e-3)


def test_bf16_engine_trains_full_weights_through_fp32_masters(tmp_path) -> None:
    engine = TorchEngine(tmp_path, device="cpu", dtype="bfloat16")
    engine.create_model("full", TINY, None, None)
    engine.create_model("lora", TINY, types.LoraConfig(rank=8), None)
    for model_id in ("full", "lora"):
        losses = []
        for _ in range(8):
            losses.append(engine.forward_backward(model_id, fwd(DATA), backward=True).metrics["loss:sum"])
            engine.optim_step(model_id, types.AdamParams(learning_rate=1e-2))
        assert losses[-1] < 0.7 * losses[0], model_id
    full, lora = engine._models["full"], engine._models["lora"]
    assert all(p.dtype == torch.bfloat16 for p in full.params.values())
    assert all(m.dtype == torch.float32 for m in full.optimizer.state["master"].values())
    assert set(full.optimizer.state["master"]) == set(full.params)
    assert all(p.dtype == torch.float32 for p in lora.params.values())  # peft keeps adapters in fp32
    assert not lora.optimizer.state["master"]
