"""LoRA models: adapters on one shared frozen base, isolated from each other, deterministic init."""

from __future__ import annotations

import pytest
import torch

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, sft_datum, weights_of

DATA = [sft_datum([5, 17, 99, 230, 41, 8, 77]), sft_datum([12, 400, 3, 3, 61])]
ADAM = types.AdamParams(learning_rate=1e-2)


def _base_weights(engine: TorchEngine) -> dict[str, torch.Tensor]:
    module = engine.registry.get(TINY).hub.base_module
    return {n: p.detach().clone() for n, p in module.named_parameters() if "lora_" not in n}


def _logprobs(engine: TorchEngine, model_id: str) -> list[float]:
    out = engine.forward_backward(model_id, fwd(DATA), backward=False)
    return [v for o in out.loss_fn_outputs for v in o["logprobs"].data]


def test_only_adapter_parameters_train_and_the_base_is_shared_and_frozen(engine: TorchEngine) -> None:
    engine.create_model("a", TINY, types.LoraConfig(rank=8), None)
    engine.create_model("b", TINY, types.LoraConfig(rank=4, train_mlp=False), None)
    a, b = engine._models["a"], engine._models["b"]
    assert a.module() is b.module() is engine.registry.get(TINY).hub.base_module  # one base in memory
    assert all(".lora_A." in n or ".lora_B." in n for n in a.params)
    assert len(a.params) == 2 * (2 * 7 + 1)  # q,k,v,o,gate,up,down per layer + lm_head, A and B each
    assert len(b.params) == 2 * (2 * 4 + 1)
    base_before = _base_weights(engine)
    a_before = weights_of(engine, "a")
    for _ in range(3):
        engine.forward_backward("a", fwd(DATA), backward=True)
        engine.optim_step("a", ADAM)
    a_after = weights_of(engine, "a")
    assert all(not torch.equal(a_before[n], a_after[n]) for n in a_before if ".lora_B." in n)
    base_after = _base_weights(engine)
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before)
    assert not any(
        p.requires_grad
        for n, p in engine.registry.get(TINY).hub.base_module.named_parameters()
        if "lora_" not in n
    )


def test_two_lora_models_do_not_interfere(engine: TorchEngine) -> None:
    for model_id in ("a", "b"):
        engine.create_model(model_id, TINY, types.LoraConfig(rank=8, seed=3), None)
    b_start = _logprobs(engine, "b")
    b_weights = weights_of(engine, "b")
    engine.forward_backward("a", fwd(DATA), backward=True)
    assert all(p.grad is None for p in engine._models["b"].params.values())
    engine.optim_step("a", ADAM)
    engine.forward_backward("a", fwd(DATA), backward=True)  # a's pending gradient must not leak into b
    engine.forward_backward("b", fwd(DATA[:1]), backward=True)
    engine.optim_step("b", types.AdamParams(learning_rate=0.0))
    assert all(torch.equal(b_weights[n], w) for n, w in weights_of(engine, "b").items())
    assert _logprobs(engine, "b") == pytest.approx(b_start, abs=1e-6)
    assert _logprobs(engine, "a") != pytest.approx(b_start, abs=1e-4)
    assert all(p.grad is not None for p in engine._models["a"].params.values())


def test_base_sampler_and_training_after_unload(engine: TorchEngine) -> None:
    engine.create_model("full", TINY, None, None)
    engine.create_model("a", TINY, types.LoraConfig(rank=8), None)
    for _ in range(2):
        engine.forward_backward("a", fwd(DATA), backward=True)
        engine.optim_step("a", ADAM)
    base = _logprobs(engine, "full")  # full-weight copy, untrained: the base numbers
    assert _logprobs(engine, "a") != pytest.approx(base, abs=1e-4)
    engine.unload_model("a")
    engine.create_model("c", TINY, types.LoraConfig(rank=8), None)
    assert _logprobs(engine, "c") == pytest.approx(base, abs=1e-5)  # B starts at zero: c computes the base


def test_seeded_init_is_deterministic(engine: TorchEngine) -> None:
    engine.create_model("a", TINY, types.LoraConfig(rank=8, seed=7), None)
    engine.create_model("b", TINY, types.LoraConfig(rank=8, seed=7), None)
    engine.create_model("c", TINY, types.LoraConfig(rank=8, seed=8), None)
    a, b, c = (weights_of(engine, m) for m in "abc")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a if ".lora_A." in n)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (types.LoraConfig(rank=6), "power of two"),
        (types.LoraConfig(rank=-2), "power of two"),
        (types.LoraConfig(rank=4, train_attn=False, train_mlp=False, train_unembed=False), "at least one"),
    ],
)
def test_bad_lora_configs(engine: TorchEngine, config: types.LoraConfig, message: str) -> None:
    with pytest.raises(UserError, match=message):
        engine.create_model("m", TINY, config, None)
    engine.create_model("m", TINY, types.LoraConfig(rank=4), None)  # the failed attempt left nothing behind


def test_lora_snapshots_sample_their_own_weights(engine: TorchEngine) -> None:
    from server_stub.engine import SampleJob

    from .engine_helpers import sample_request

    engine.create_model("a", TINY, types.LoraConfig(rank=8), None)
    engine.create_model("b", TINY, types.LoraConfig(rank=8, seed=5), None)
    for _ in range(3):
        engine.forward_backward("a", fwd(DATA), backward=True)
        engine.optim_step("a", ADAM)
    snap_a = engine.save_sampler_weights("a", None, None).sampling_session_id
    snap_b = engine.save_sampler_weights("b", None, None).sampling_session_id
    prompt = [5, 17, 99, 230]
    request = sample_request(prompt, num_samples=2, max_tokens=8, temperature=1.0, seed=3)
    first_a, first_b = engine.sample([SampleJob(snap_a, request), SampleJob(snap_b, request)])
    for _ in range(2):  # training after the snapshot must not change what it samples
        engine.forward_backward("a", fwd(DATA), backward=True)
        engine.optim_step("a", ADAM)
    again_a, again_b = engine.sample([SampleJob(snap_b, request), SampleJob(snap_a, request)])[::-1]
    assert again_a == first_a and again_b == first_b
    assert [s.tokens for s in first_a.sequences] != [s.tokens for s in first_b.sequences]
    # b is untrained (B = 0), so its samples are the base model's: check its logprobs against a forward pass
    engine.create_model("full", TINY, None, None)
    for seq in first_b.sequences:
        out = engine.forward_backward("full", fwd([sft_datum(prompt + seq.tokens)]), backward=False)
        assert seq.logprobs == pytest.approx(
            out.loss_fn_outputs[0]["logprobs"].data[len(prompt) - 1 :], abs=1e-4
        )
