"""The activation budget: a model's token cap per training piece and per sampling cache, derived from its
config, checked against what autograd really keeps, and passes cut by it that equal one piece."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from cookbook.client import types
from server_stub.activation_budget import (
    MIB,
    cache_bytes_per_token,
    tokens_within,
    training_bytes_per_token,
)
from server_stub.config import ServerConfig
from server_stub.engine import SampleJob
from server_stub.models.tiny_llama import tiny_llama_config
from server_stub.sampling import FP32_LOGPROB_ATOL
from server_stub.sampling.batches import cache_tokens, sampling_batches
from server_stub.sampling.requests import PreparedRequest
from server_stub.torch_engine import CPU_PASS_TOKEN_BUDGET, TorchEngine
from server_stub.training.reward_head import REWARD_HEAD_WEIGHT

from .engine_helpers import TINY, fwd, grads_of, sample_request, saved_bytes_per_token, sft_datum

BUDGET_MIB = 1  # the built-in model keeps about 26 KB per training token: a 39-token piece


def test_the_estimate_matches_what_autograd_keeps_on_the_builtin_model(tmp_path: Path) -> None:
    engine = TorchEngine(tmp_path, device="cpu")
    engine.create_model("m", TINY, types.LoraConfig(rank=8), None)
    module = engine._models["m"].module()
    measured = saved_bytes_per_token(module, torch.randint(1, 250, (2, 128)))
    assert training_bytes_per_token(module.config, 4) == pytest.approx(measured, rel=0.1)


def test_the_builtin_models_cap_is_far_above_its_pieces(tmp_path: Path) -> None:
    config = tiny_llama_config()
    assert training_bytes_per_token(config, 4) == 2 * (10 * 128 + 4 * 512) * 4
    assert tokens_within(ServerConfig.activation_budget_mib, training_bytes_per_token(config, 4)) > 16 * 1024
    engine = TorchEngine(tmp_path, device="cpu")
    engine.create_model("m", TINY, None, None)
    model = engine._models["m"]
    # Unchanged: the CPU's speed chunks and max_pass_tokens decide, as before the budget.
    assert engine.pass_sizes(model, backward=True) == (CPU_PASS_TOKEN_BUDGET, ServerConfig.max_pass_tokens)
    assert engine.pass_sizes(model, backward=False) == (CPU_PASS_TOKEN_BUDGET, ServerConfig.max_pass_tokens)


def test_a_small_budget_caps_training_pieces_only(tmp_path: Path) -> None:
    engine = TorchEngine(tmp_path, device="cpu", activation_budget_mib=BUDGET_MIB)
    engine.create_model("m", TINY, None, None)
    model = engine._models["m"]
    cap = BUDGET_MIB * MIB // training_bytes_per_token(tiny_llama_config(), 4)
    assert engine.pass_sizes(model, backward=True) == (cap, cap)
    assert engine.pass_sizes(model, backward=False) == (CPU_PASS_TOKEN_BUDGET, ServerConfig.max_pass_tokens)


DATA = [
    sft_datum([(5 * i + j) % 250 + 1 for j in range(6 + 3 * i)]) for i in range(10)
]  # 185 tokens, rows <= 32


def _pieces(module: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    seen: list[int] = []

    def forward(_: torch.nn.Module, __: tuple[object, ...], kwargs: dict[str, torch.Tensor]) -> None:
        seen.append(kwargs["input_ids"].numel())

    return seen, module.register_forward_pre_hook(forward, with_kwargs=True)


@pytest.mark.parametrize("lora", [None, types.LoraConfig(rank=4)])
def test_a_pass_over_the_cap_is_cut_and_equals_one_piece(
    tmp_path: Path, lora: types.LoraConfig | None
) -> None:
    whole = TorchEngine(tmp_path / "whole", device="cpu")
    capped = TorchEngine(tmp_path / "capped", device="cpu", activation_budget_mib=BUDGET_MIB)
    for engine in (whole, capped):
        engine.pass_token_budget = None  # one piece unless the budget cuts it
        engine.create_model("m", TINY, lora, None)
    cap = capped.pass_sizes(capped._models["m"], backward=True)[1]
    a = whole.forward_backward("m", fwd(DATA), backward=True)
    seen, handle = _pieces(capped._models["m"].module())
    try:
        b = capped.forward_backward("m", fwd(DATA), backward=True)
    finally:
        handle.remove()
    assert len(seen) > 1 and max(seen) <= cap < sum(d.model_input.length for d in DATA)
    assert b.metrics["loss:sum"] == pytest.approx(a.metrics["loss:sum"], rel=1e-5)
    for out_a, out_b in zip(a.loss_fn_outputs, b.loss_fn_outputs, strict=True):
        assert out_b["logprobs"].data == pytest.approx(out_a["logprobs"].data, abs=1e-5)
    grads_a, grads_b = grads_of(whole, "m"), grads_of(capped, "m")
    for name, grad in grads_a.items():
        assert grad is not None and torch.allclose(grad, grads_b[name], rtol=1e-4, atol=1e-5), name


def _score_datum(tokens: list[int]) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs={})


def test_the_score_pass_reruns_pieces_within_the_cap_and_equals_one_piece(tmp_path: Path) -> None:
    pairs = [_score_datum([(7 * i + j) % 250 + 1 for j in range(8 + 4 * i)]) for i in range(8)]
    whole = TorchEngine(tmp_path / "whole", device="cpu")
    capped = TorchEngine(tmp_path / "capped", device="cpu", activation_budget_mib=BUDGET_MIB)
    for engine in (whole, capped):
        engine.pass_token_budget = None
        engine.create_model("rm", TINY, types.LoraConfig(rank=4), None, reward_head=True)
        with torch.no_grad():
            engine._models["rm"].reward_head.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(3))  # type: ignore[union-attr]
    cap = capped.pass_sizes(capped._models["rm"], backward=True)[1]
    a = whole.forward_backward("rm", fwd(pairs, "bradley_terry"), backward=True)
    seen: list[int] = []
    decoder = capped._models["rm"].module().get_decoder()
    handle = decoder.register_forward_pre_hook(
        lambda _, __, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    try:
        b = capped.forward_backward("rm", fwd(pairs, "bradley_terry"), backward=True)
    finally:
        handle.remove()
    assert len(seen) > 2 and max(seen) <= cap  # scored in pieces, then each piece rerun with its graph
    assert b.metrics["loss:sum"] == pytest.approx(a.metrics["loss:sum"], rel=1e-5)
    scores = [[out[types.REWARD_SCORE_OUTPUT].data[0] for out in r.loss_fn_outputs] for r in (a, b)]
    assert scores[1] == pytest.approx(scores[0], abs=1e-5)
    grads_a, grads_b = grads_of(whole, "rm"), grads_of(capped, "rm")
    assert {n for n, g in grads_a.items() if g is None} == {n for n, g in grads_b.items() if g is None}
    for name, grad in grads_a.items():  # the output layer's adapter gets none: scores read the body
        assert grad is None or torch.allclose(grad, grads_b[name], rtol=1e-4, atol=1e-5), name  # type: ignore[arg-type]
    assert grads_a[REWARD_HEAD_WEIGHT] is not None


def _prepared(prompt_length: int, num_samples: int = 1, max_tokens: int = 4) -> PreparedRequest:
    return PreparedRequest(
        prompt=[1] * prompt_length,
        num_samples=num_samples,
        max_tokens=max_tokens,
        temperature=1.0,
        top_k=-1,
        top_p=1.0,
        seed=0,
        stop_token_ids=(),
        stop_strings=(),
        prompt_logprobs=False,
        topk_prompt_logprobs=0,
    )


def test_sampling_batches_keep_arrival_order_when_they_fit_and_pack_by_length_when_not() -> None:
    requests = [_prepared(10), _prepared(100, num_samples=4), _prepared(12), _prepared(90)]
    assert cache_tokens(requests) == 7 * 104
    assert sampling_batches(requests, max_rows=512, max_cache_tokens=7 * 104) == [[0, 1, 2, 3]]
    assert sampling_batches(requests, max_rows=2, max_cache_tokens=10**6) == [[0], [1], [2, 3]]
    # Over the cache: longest prompts first, so the short ones pad only to each other.
    assert sampling_batches(requests, max_rows=512, max_cache_tokens=500) == [[1], [3, 2, 0]]
    assert sampling_batches(requests, max_rows=512, max_cache_tokens=1) == [[1], [3], [2], [0]]
    assert sampling_batches([], max_rows=512, max_cache_tokens=1) == []


def test_sampling_under_a_small_cache_budget_equals_one_batch(tmp_path: Path) -> None:
    whole = TorchEngine(tmp_path / "whole", device="cpu")
    capped = TorchEngine(tmp_path / "capped", device="cpu", activation_budget_mib=BUDGET_MIB)
    per_token = cache_bytes_per_token(tiny_llama_config(), 4)
    requests = [
        sample_request([(3 * i + j) % 250 + 1 for j in range(5 + 40 * (i % 3))], 2, max_tokens=6, seed=i)
        for i in range(8)
    ]
    prepared = [_prepared(r.prompt.length, 2, 6) for r in requests]
    assert cache_tokens(prepared) * per_token > BUDGET_MIB * MIB  # the budget splits this batch
    results = []
    for engine in (whole, capped):
        sampler = engine.create_sampler(TINY, None).sampler_id
        results.append(engine.sample([SampleJob(sampler, r) for r in requests]))
    for one, other in zip(*results, strict=True):
        assert isinstance(one, types.SampleResponse) and isinstance(other, types.SampleResponse)
        assert [s.tokens for s in other.sequences] == [s.tokens for s in one.sequences]
        for x, y in zip(one.sequences, other.sequences, strict=True):
            assert y.logprobs == pytest.approx(x.logprobs, abs=FP32_LOGPROB_ATOL)


def test_the_budget_is_a_server_setting() -> None:
    from server_stub.config import ConfigError, config_from_args

    assert config_from_args(["--activation-budget-mib", "512"]).activation_budget_mib == 512
    with pytest.raises(ConfigError):
        ServerConfig(activation_budget_mib=0)


def test_a_row_longer_than_the_cap_recomputes_its_layers_and_equals_keeping_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server_stub.training import forward_backward

    recomputed: list[bool] = []
    original = forward_backward.layers_recomputed

    def spy(module: torch.nn.Module, recompute: bool = True) -> Any:
        recomputed.append(recompute)
        return original(module, recompute)

    monkeypatch.setattr(forward_backward, "layers_recomputed", spy)
    long_row = [sft_datum([(11 * j) % 250 + 1 for j in range(120)])]  # three times the 39-token cap
    whole = TorchEngine(tmp_path / "whole", device="cpu")
    capped = TorchEngine(tmp_path / "capped", device="cpu", activation_budget_mib=BUDGET_MIB)
    for engine in (whole, capped):
        engine.create_model("m", TINY, types.LoraConfig(rank=4), None)
    a = whole.forward_backward("m", fwd(long_row), backward=True)
    assert recomputed == [False]
    b = capped.forward_backward("m", fwd(long_row), backward=True)
    assert recomputed == [False, True]
    capped.forward_backward("m", fwd(long_row), backward=False)
    assert recomputed == [False, True, False]  # an inference pass keeps nothing to recompute
    assert b.metrics["loss:sum"] == pytest.approx(a.metrics["loss:sum"], rel=1e-5)
    assert b.loss_fn_outputs[0]["logprobs"].data == pytest.approx(
        a.loss_fn_outputs[0]["logprobs"].data, abs=1e-5
    )
    grads_a, grads_b = grads_of(whole, "m"), grads_of(capped, "m")
    for name, grad in grads_a.items():
        assert grad is not None and torch.allclose(grad, grads_b[name], rtol=1e-4, atol=1e-5), name


def test_recomputed_layers_leave_autograd_almost_nothing_saved(tmp_path: Path) -> None:
    from server_stub.training.recompute import layers_recomputed

    engine = TorchEngine(tmp_path, device="cpu")
    engine.create_model("m", TINY, types.LoraConfig(rank=4), None)
    module = engine._models["m"].module()
    tokens = torch.randint(1, 250, (1, 256))
    kept = saved_bytes_per_token(module, tokens)
    with layers_recomputed(module):
        recomputed = saved_bytes_per_token(module, tokens)
    assert recomputed < 0.25 * kept
    assert "forward" not in vars(module.get_decoder().layers[0])  # the layers are themselves again
