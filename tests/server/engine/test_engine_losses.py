"""Every built-in loss: value, gradient and logprobs against plain PyTorch on the same weights.

The reference runs each datum alone through an untouched copy of the base model, computes the
per-token terms of reference §3 with ordinary tensor code and sums them; the engine batches the
datums (different lengths, so padding is exercised) and must agree.
"""

from __future__ import annotations

import math

import pytest
import torch

from cookbook.client import types
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, grads_of, rl_datum, sft_datum

SEQS = [[5, 17, 99, 230, 41, 8, 77, 300], [12, 400, 3, 3, 61], [250, 251, 9, 14, 88, 101, 7, 66, 500, 1, 2]]


def _ref_logprobs(model: torch.nn.Module, tokens: list[int], targets: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=torch.tensor([tokens[:-1]])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    if targets.dim() == 1:
        return logp[torch.arange(len(targets)), targets]
    return logp.gather(-1, targets)


def _reference(
    engine: TorchEngine, loss_fn: str, inputs: list[dict[str, torch.Tensor]], config: dict[str, float]
) -> tuple[float, dict[str, torch.Tensor], list[torch.Tensor]]:
    """Loss, grads by parameter name and per-datum logprobs from a fresh copy of the base weights."""
    model = engine.registry.fresh_model(TINY)
    model.requires_grad_(True)
    total = torch.zeros(())
    all_lp = []
    for tokens, values in zip(SEQS, inputs, strict=True):
        lp = _ref_logprobs(model, tokens, values["target_tokens"])
        all_lp.append(lp.detach())
        if loss_fn == "cross_entropy":
            terms = -values["weights"] * lp
        else:
            lq, adv = values["logprobs"], values["advantages"]
            ratio = torch.exp(lp - lq)
            lo = values.get("clip_low_threshold", torch.tensor(config.get("clip_low_threshold", 0.0)))
            hi = values.get("clip_high_threshold", torch.tensor(config.get("clip_high_threshold", 0.0)))
            if loss_fn == "importance_sampling":
                terms = -ratio * adv
            elif loss_fn == "ppo":
                terms = -torch.minimum(ratio * adv, torch.clamp(ratio, lo, hi) * adv)
            elif loss_fn == "cispo":
                terms = -torch.clamp(ratio, lo, hi).detach() * lp * adv
            else:
                mask = ((adv != 0) | (lq != 0)).float()
                terms = -(lp * adv - 0.5 * config["beta"] * (lp - lq) ** 2 * mask)
        total = total + terms.sum()
    total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return float(total.detach()), grads, all_lp


def _rl_inputs(seed: int, extra_clip: bool = False) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for tokens in SEQS:
        n = len(tokens) - 1
        values = {
            "target_tokens": torch.tensor(tokens[1:]),
            "logprobs": -3.0 - 5.0 * torch.rand(n, generator=gen),
            "advantages": torch.randn(n, generator=gen),
        }
        values["logprobs"][:2] = 0.0  # prompt placeholders: zero logprob and zero advantage
        values["advantages"][:2] = 0.0
        if extra_clip:
            values["clip_low_threshold"] = 0.5 + 0.3 * torch.rand(n, generator=gen)
            values["clip_high_threshold"] = 1.1 + 0.5 * torch.rand(n, generator=gen)
        inputs.append(values)
    return inputs


def _check(
    engine: TorchEngine,
    loss_fn: str,
    inputs: list[dict[str, torch.Tensor]],
    config: dict[str, float],
    sent_config: dict[str, float] | None,
) -> None:
    engine.create_model("m", TINY, None, None)
    if loss_fn == "cross_entropy":
        data = [sft_datum(tokens, None) for tokens in SEQS]
        data = [
            d.model_copy(update={"loss_fn_inputs": {k: _td(v) for k, v in values.items()}})
            for d, values in zip(data, inputs, strict=True)
        ]
    else:
        data = [
            rl_datum(tokens, [], []).model_copy(
                update={"loss_fn_inputs": {k: _td(v) for k, v in values.items()}}
            )
            for tokens, values in zip(SEQS, inputs, strict=True)
        ]
    out = engine.forward_backward("m", fwd(data, loss_fn, sent_config), backward=True)
    ref_loss, ref_grads, ref_lp = _reference(engine, loss_fn, inputs, config)
    assert set(out.metrics) == {"loss:sum"}
    assert out.metrics["loss:sum"] == pytest.approx(ref_loss, rel=1e-5, abs=1e-5)
    for got, want, values in zip(out.loss_fn_outputs, ref_lp, inputs, strict=True):
        assert got["logprobs"].shape == list(values["target_tokens"].shape)
        assert torch.allclose(got["logprobs"].to_torch(), want, atol=1e-5)
    grads = grads_of(engine, "m")
    assert any(float(g.abs().max()) > 0 for g in grads.values())
    for name, grad in grads.items():
        scale = max(1.0, float(ref_grads[name].abs().max()))  # fp32 summation order differs with batching
        assert torch.allclose(grad, ref_grads[name], rtol=1e-4, atol=2e-6 * scale), name


def _td(value: torch.Tensor) -> types.TensorData:
    return types.TensorData.from_torch(value)


def test_cross_entropy_with_negative_and_fractional_weights(engine: TorchEngine) -> None:
    gen = torch.Generator().manual_seed(0)
    inputs = [
        {"target_tokens": torch.tensor(t[1:]), "weights": torch.randn(len(t) - 1, generator=gen)}
        for t in SEQS
    ]
    _check(engine, "cross_entropy", inputs, {}, None)


def test_cross_entropy_with_top_k_targets(engine: TorchEngine) -> None:
    gen = torch.Generator().manual_seed(1)
    inputs = [
        {
            "target_tokens": torch.randint(0, 512, (len(t) - 1, 3), generator=gen),
            "weights": torch.rand(len(t) - 1, 3, generator=gen),
        }
        for t in SEQS
    ]
    _check(engine, "cross_entropy", inputs, {}, None)


def test_importance_sampling(engine: TorchEngine) -> None:
    _check(engine, "importance_sampling", _rl_inputs(2), {}, None)


@pytest.mark.parametrize("sent", [None, {"clip_low_threshold": 0.9, "clip_high_threshold": 1.05}])
def test_ppo_with_config_thresholds(engine: TorchEngine, sent: dict[str, float] | None) -> None:
    config = sent or {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    _check(engine, "ppo", _near_policy_inputs(engine, seed=3), config, sent)


def test_ppo_with_per_token_thresholds(engine: TorchEngine) -> None:
    inputs = _near_policy_inputs(engine, seed=4, extra_clip=True)
    _check(engine, "ppo", inputs, {}, None)


def test_cispo(engine: TorchEngine) -> None:
    _check(
        engine,
        "cispo",
        _near_policy_inputs(engine, seed=5),
        {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
        None,
    )


@pytest.mark.parametrize("sent", [None, {"beta": 0.3}])
def test_dro_masks_placeholders(engine: TorchEngine, sent: dict[str, float] | None) -> None:
    _check(engine, "dro", _rl_inputs(6), {"beta": (sent or {"beta": 0.05})["beta"]}, sent)


def _near_policy_inputs(
    engine: TorchEngine, seed: int, extra_clip: bool = False
) -> list[dict[str, torch.Tensor]]:
    """Sampler logprobs close to the model's own, so ratios land on both sides of the clip bounds."""
    model = engine.registry.fresh_model(TINY)
    inputs = _rl_inputs(seed, extra_clip)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for tokens, values in zip(SEQS, inputs, strict=True):
            lp = _ref_logprobs(model, tokens, values["target_tokens"])
            values["logprobs"] = lp + 0.4 * torch.randn(lp.shape, generator=gen)
    ratios = torch.cat(
        [
            torch.exp(_ref_logprobs(model, t, v["target_tokens"]) - v["logprobs"]).detach()
            for t, v in zip(SEQS, inputs, strict=True)
        ]
    )
    assert (ratios < 0.8).any() and (ratios > 1.2).any() and ((ratios > 0.8) & (ratios < 1.2)).any()
    return inputs


def test_dro_quadratic_term_is_skipped_only_on_placeholders(engine: TorchEngine) -> None:
    """A datum with all-zero advantages and logprobs contributes nothing to DRO."""
    engine.create_model("m", TINY, None, None)
    tokens = SEQS[0]
    n = len(tokens) - 1
    out = engine.forward_backward("m", fwd([rl_datum(tokens, [0.0] * n, [0.0] * n)], "dro"), backward=False)
    assert out.metrics["loss:sum"] == 0.0
    out = engine.forward_backward("m", fwd([rl_datum(tokens, [-1.0] * n, [0.0] * n)], "dro"), backward=False)
    lp = torch.tensor(out.loss_fn_outputs[0]["logprobs"].data)
    assert out.metrics["loss:sum"] == pytest.approx(float(0.5 * 0.05 * ((lp + 1.0) ** 2).sum()), rel=1e-5)
    assert math.isfinite(out.metrics["loss:sum"])
