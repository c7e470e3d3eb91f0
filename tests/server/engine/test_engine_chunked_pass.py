"""Training passes split into length-sorted chunks give the one-batch result, in request order."""

from __future__ import annotations

import pytest
import torch

from server_stub.engine import UserError
from server_stub.torch_engine import CPU_PASS_TOKEN_BUDGET, TorchEngine
from server_stub.training.batch import length_chunks

from .engine_helpers import TINY, fwd, grads_of, rl_datum, sft_datum

# Lengths 9, 4, 6, 2 (model inputs): a budget of 12 padded tokens cuts them into several chunks.
DATA = [
    sft_datum(list(range(10, 20))),
    sft_datum([5, 17, 99, 230, 41]),
    sft_datum([250, 251, 9, 14, 88, 101, 7], [0.5, -1.0, 2.0, 0.0, 1.0, 3.0]),
    sft_datum([3, 4, 5]),
]


def test_length_chunks_cut_sorted_rows_where_the_work_is_least() -> None:
    lengths = [9, 4, 6, 2, 30, 6]  # sorted: rows 4, 0, 2, 5, 1, 3
    # No cost per chunk: equal lengths share a chunk, nothing is padded.
    assert length_chunks(lengths, 10_000, chunk_cost=0) == [[4], [0], [2, 5], [1], [3]]
    # 10 tokens a chunk: [30] [9] [6 6 4 2] is 30 + 9 + 24 + 3 * 10 = 93, the least of every split.
    assert length_chunks(lengths, 10_000, chunk_cost=10) == [[4], [0], [2, 5, 1, 3]]
    assert length_chunks(lengths, 10_000, chunk_cost=1_000) == [[4, 0, 2, 5, 1, 3]]
    # The budget bounds a chunk of several rows: 2 x 9 = 18 > 12, 3 x 6 = 18 > 12.
    assert length_chunks(lengths, 12, chunk_cost=1_000) == [[4], [0], [2, 5], [1, 3]]
    assert length_chunks(lengths, 1) == [[4], [0], [2], [5], [1], [3]]  # never more chunks than rows
    assert length_chunks([8, 8, 8, 7], 10_000) == [[0, 1, 2, 3]]  # too little padding to save: one chunk
    assert length_chunks([], 12) == []
    with pytest.raises(ValueError, match="token_budget"):
        length_chunks(lengths, 0)


def _engines(tmp_path) -> tuple[TorchEngine, TorchEngine]:
    whole, chunked = TorchEngine(tmp_path / "a", device="cpu"), TorchEngine(tmp_path / "b", device="cpu")
    whole.pass_token_budget, chunked.pass_token_budget = None, 12
    for engine in (whole, chunked):
        engine.create_model("m", TINY, None, None)
    return whole, chunked


@pytest.mark.parametrize("loss_fn", ["cross_entropy", "ppo"])
def test_chunked_pass_matches_one_batch(tmp_path, loss_fn: str) -> None:
    whole, chunked = _engines(tmp_path)
    if loss_fn == "cross_entropy":
        data = DATA
    else:
        data = [
            rl_datum(
                [*d.model_input.to_ints(), 1],
                [-2.0] * d.model_input.length,
                [(-1.0) ** i * 0.5] * d.model_input.length,
            )
            for i, d in enumerate(DATA)
        ]
    a = whole.forward_backward("m", fwd(data, loss_fn), backward=True)
    b = chunked.forward_backward("m", fwd(data, loss_fn), backward=True)
    assert b.metrics["loss:sum"] == pytest.approx(a.metrics["loss:sum"], rel=1e-5)
    for out_a, out_b, datum in zip(a.loss_fn_outputs, b.loss_fn_outputs, data, strict=True):
        assert out_b["logprobs"].shape == [datum.model_input.length]
        assert out_b["logprobs"].data == pytest.approx(out_a["logprobs"].data, rel=1e-4, abs=1e-5)
    grads_a, grads_b = grads_of(whole, "m"), grads_of(chunked, "m")
    # Sums in another order: equal to fp32 rounding at the gradient's scale.
    for name, grad in grads_a.items():
        assert grad is not None, name
        assert torch.allclose(grad, grads_b[name], rtol=1e-4, atol=1e-6 * float(grad.abs().max())), name


def test_non_finite_loss_in_a_later_chunk_accumulates_nothing(tmp_path) -> None:
    _, chunked = _engines(tmp_path)
    good = rl_datum(list(range(10, 20)), [-1.0] * 9, [1.0] * 9)  # the first (longest) chunk
    bad = rl_datum([1, 2, 3], [-1000.0, -1000.0], [1.0, 1.0])  # overflows the ratio, in the last chunk
    with pytest.raises(UserError, match="not finite"):
        chunked.forward_backward("m", fwd([bad, good], "importance_sampling"), backward=True)
    assert all(g is None for g in grads_of(chunked, "m").values())


def test_cpu_engine_chunks_by_default(engine: TorchEngine) -> None:
    assert engine.pass_token_budget == CPU_PASS_TOKEN_BUDGET
