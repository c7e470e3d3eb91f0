"""Every pass is bounded by `max_pass_tokens`, never by rows, and its pieces add up to the one-piece answer.

A tiny budget forces many pieces: prefills in row chunks (the KV caches joined), prompt logprobs in
position pieces, training passes in row chunks each backpropagated before the next. Results must
match an engine with the default budget (tokens identical, logprobs within `FP32_LOGPROB_ATOL`),
and instruments on the model show no piece ever held more than the budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from cookbook.client import types
from server_stub.engine import SampleJob, UserError
from server_stub.sampling import FP32_LOGPROB_ATOL
from server_stub.torch_engine import TorchEngine
from server_stub.training.batch import within_tokens

from .engine_helpers import TINY, fwd, grads_of, rl_datum, sample_request, sft_datum

TINY_BUDGET = 12


@contextmanager
def watched(module: torch.nn.Module) -> Iterator[dict[str, list[Any]]]:
    """Records every forward's tokens (prefills' shapes apart), the tokens of each output-layer product
    (those on one prompt's positions, 2-D, apart), and the order of forwards and backwards."""
    seen: dict[str, list[Any]] = {
        "forward_tokens": [],
        "prefills": [],
        "head_positions": [],
        "head_tokens": [],
        "events": [],
    }

    def forward(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["forward_tokens"].append(kwargs["input_ids"].numel())
        if kwargs["input_ids"].shape[1] > 1:  # decode steps feed one token per row
            seen["prefills"].append(tuple(kwargs["input_ids"].shape))
        seen["events"].append("forward")

    def head(_: torch.nn.Module, __: Any, output: torch.Tensor) -> None:
        seen["head_tokens"].append(output.numel() // output.shape[-1])
        if output.dim() == 2:
            seen["head_positions"].append(output.shape[0])
        if output.requires_grad:
            output.register_hook(lambda grad: seen["events"].append("backward"))

    handles = [
        module.register_forward_pre_hook(forward, with_kwargs=True),
        module.get_output_embeddings().register_forward_hook(head),
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _sample(
    engine: TorchEngine, sampler: str, requests: list[types.SampleRequest]
) -> list[types.SampleResponse]:
    results = engine.sample([SampleJob(sampler, r) for r in requests])
    assert not any(isinstance(r, Exception) for r in results), results
    return results  # type: ignore[return-value]


def _requests(max_tokens: int) -> list[types.SampleRequest]:
    """Prompts of 3 to 13 tokens, some shared, some asking for prompt logprobs and top-k, greedy and seeded."""
    requests = []
    for i in range(10):
        prompt = [(7 * i + j) % 250 + 1 for j in range(3 + (5 * i) % 15)]
        extra = {"prompt_logprobs": i % 3 != 1, "topk_prompt_logprobs": (0, 4, 2)[i % 3]}
        params = {"temperature": 0.0} if i % 2 else {"temperature": 1.0, "seed": i}
        request = sample_request(prompt, num_samples=1 + i % 3, max_tokens=max_tokens, **params)
        requests.append(request.model_copy(update=extra))
    return [*requests, requests[2].model_copy(update={"topk_prompt_logprobs": 6})]  # a shared prompt


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[TorchEngine, TorchEngine, str, str]:
    root = Path(tmp_path_factory.mktemp("pass_tokens"))
    whole = TorchEngine(root / "whole", device="cpu")
    pieces = TorchEngine(root / "pieces", device="cpu", max_pass_tokens=TINY_BUDGET)
    samplers = [engine.create_sampler(TINY, None).sampler_id for engine in (whole, pieces)]
    return whole, pieces, samplers[0], samplers[1]


def _assert_same(a: list[types.SampleResponse], b: list[types.SampleResponse]) -> None:
    for one, other in zip(a, b, strict=True):
        assert [s.tokens for s in other.sequences] == [s.tokens for s in one.sequences]
        for x, y in zip(one.sequences, other.sequences, strict=True):
            assert y.logprobs == pytest.approx(x.logprobs, abs=FP32_LOGPROB_ATOL)
        if one.prompt_logprobs is None:
            assert other.prompt_logprobs is None
        else:
            assert other.prompt_logprobs is not None and other.prompt_logprobs[0] is None
            assert other.prompt_logprobs[1:] == pytest.approx(one.prompt_logprobs[1:], abs=FP32_LOGPROB_ATOL)
        if one.topk_prompt_logprobs is None:
            assert other.topk_prompt_logprobs is None
            continue
        assert other.topk_prompt_logprobs is not None
        assert len(other.topk_prompt_logprobs) == len(one.topk_prompt_logprobs)
        for top_a, top_b in zip(one.topk_prompt_logprobs[1:], other.topk_prompt_logprobs[1:], strict=True):
            assert [t for t, _ in top_b] == [t for t, _ in top_a]
            assert [v for _, v in top_b] == pytest.approx([v for _, v in top_a], abs=FP32_LOGPROB_ATOL)


@pytest.mark.parametrize("max_tokens", [1, 5])
def test_sampling_in_pieces_matches_one_piece(engines, max_tokens: int) -> None:
    whole, pieces, whole_sampler, pieces_sampler = engines
    requests = _requests(max_tokens)
    expected = _sample(whole, whole_sampler, requests)
    with watched(pieces.registry.get(TINY).hub.base_module) as seen:
        got = _sample(pieces, pieces_sampler, requests)
    _assert_same(expected, got)
    assert len(seen["prefills"]) > 1  # the prefill really ran in row chunks
    assert sum(rows for rows, _ in seen["prefills"]) == len({tuple(r.prompt.to_ints()) for r in requests})
    widest = max(r.prompt.length for r in requests)
    # A prompt wider than the budget runs alone; decode steps hold one token per row.
    assert max(rows * width for rows, width in seen["prefills"]) <= max(TINY_BUDGET, widest)
    assert max(seen["head_positions"]) <= TINY_BUDGET
    asked = {tuple(r.prompt.to_ints()) for r in requests if r.prompt_logprobs or r.topk_prompt_logprobs}
    assert sum(seen["head_positions"]) == sum(len(p) - 1 for p in asked)  # only the positions asked for


def test_prompt_logprobs_with_a_lora_on_the_output_layer_equal_training(tmp_path: Path) -> None:
    engine = TorchEngine(tmp_path, device="cpu", max_pass_tokens=TINY_BUDGET)
    lora = types.LoraConfig(rank=4, train_unembed=True)
    engine.create_model("m", TINY, lora, None)
    prompt = [(11 * j) % 250 + 1 for j in range(30)]
    engine.forward_backward("m", fwd([sft_datum(prompt)]), backward=True)
    engine.optim_step("m", types.AdamParams(learning_rate=5e-2))
    sampler = engine.save_sampler_weights("m", None, None).sampling_session_id
    assert sampler is not None
    request = sample_request(prompt, max_tokens=1).model_copy(update={"prompt_logprobs": True})
    [result] = _sample(engine, sampler, [request])
    train = engine.forward_backward("m", fwd([sft_datum(prompt)]), backward=False)
    assert result.prompt_logprobs is not None
    assert result.prompt_logprobs[1:] == pytest.approx(
        train.loss_fn_outputs[0]["logprobs"].data, abs=FP32_LOGPROB_ATOL
    )


def test_a_large_judging_batch_never_holds_more_logits_than_the_budget(engines) -> None:
    """The judge's workload: many long prompts, each with prompt logprobs and top-k, one token each."""
    _, pieces, _, sampler = engines
    requests = [
        sample_request([(3 * i + j) % 250 + 1 for j in range(40)], max_tokens=1, temperature=0.0).model_copy(
            update={"prompt_logprobs": True, "topk_prompt_logprobs": 20}
        )
        for i in range(64)
    ]
    with watched(pieces.registry.get(TINY).hub.base_module) as seen:
        results = _sample(pieces, sampler, requests)
    assert all(r.prompt_logprobs is not None and len(r.prompt_logprobs) == 40 for r in results)
    assert max(seen["head_positions"]) <= TINY_BUDGET  # vs 64 x 40 positions in one piece
    assert max(seen["forward_tokens"]) <= 40  # one 40-token prompt at a time, under a 12-token budget


def test_within_tokens_bounds_every_piece() -> None:
    lengths = [9, 4, 6, 2, 30, 6]
    assert within_tokens([0, 1, 2], lengths, 100) == [[0, 1, 2]]  # fits: kept as it is
    assert within_tokens([0, 1, 2, 3, 4, 5], lengths, 18) == [[4], [0, 2], [5, 1, 3]]
    assert within_tokens([0, 1], lengths, 1) == [[0], [1]]
    assert within_tokens([], lengths, 5) == []
    with pytest.raises(ValueError, match="max_tokens"):
        within_tokens([0], lengths, 0)


DATA = [sft_datum([(5 * i + j) % 250 + 1 for j in range(4 + 3 * i)]) for i in range(6)]


def _training_engines(tmp_path: Path) -> tuple[TorchEngine, TorchEngine]:
    """Accelerator-style engines (no speed chunking): one with the default budget, one with a tiny one."""
    whole = TorchEngine(tmp_path / "whole", device="cpu")
    pieces = TorchEngine(tmp_path / "pieces", device="cpu", max_pass_tokens=TINY_BUDGET)
    for engine in (whole, pieces):
        engine.pass_token_budget = None
        engine.create_model("m", TINY, None, None)
    return whole, pieces


def test_training_in_pieces_matches_one_batch_and_backpropagates_each_piece_first(tmp_path: Path) -> None:
    whole, pieces = _training_engines(tmp_path)
    a = whole.forward_backward("m", fwd(DATA), backward=True)
    with watched(pieces._models["m"].module()) as seen:
        b = pieces.forward_backward("m", fwd(DATA), backward=True)
    assert b.metrics["loss:sum"] == pytest.approx(a.metrics["loss:sum"], rel=1e-5)
    for out_a, out_b in zip(a.loss_fn_outputs, b.loss_fn_outputs, strict=True):
        assert out_b["logprobs"].data == pytest.approx(out_a["logprobs"].data, rel=1e-4, abs=1e-5)
    grads_a, grads_b = grads_of(whole, "m"), grads_of(pieces, "m")
    for name, grad in grads_a.items():
        assert grad is not None and torch.allclose(grad, grads_b[name], rtol=1e-4, atol=1e-6), name
    longest = max(d.model_input.length for d in DATA)
    assert max(seen["forward_tokens"]) <= max(TINY_BUDGET, longest)
    assert max(seen["head_tokens"]) <= max(TINY_BUDGET, longest)  # logits of one piece, not the batch
    assert len(seen["forward_tokens"]) > 1
    assert seen["events"] == ["forward", "backward"] * len(
        seen["forward_tokens"]
    )  # one piece alive at a time


def test_a_non_finite_piece_takes_back_the_gradients_of_the_pieces_before_it(tmp_path: Path) -> None:
    _, pieces = _training_engines(tmp_path)
    pieces.forward_backward("m", fwd(DATA[:2]), backward=True)
    before = grads_of(pieces, "m")
    good = rl_datum(list(range(10, 30)), [-1.0] * 19, [1.0] * 19)  # the first (longest) piece
    bad = rl_datum([1, 2, 3], [-1000.0, -1000.0], [1.0, 1.0])  # overflows the ratio, in the last piece
    with pytest.raises(UserError, match="not finite"):
        pieces.forward_backward("m", fwd([bad, good], "importance_sampling"), backward=True)
    after = grads_of(pieces, "m")
    for name, grad in before.items():
        assert grad is not None and torch.equal(grad, after[name]), name
