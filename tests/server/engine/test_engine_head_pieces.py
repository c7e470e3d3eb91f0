"""A pass whose logits would be large runs its output layer in pieces of positions, with the same results.

The built-in model's vocabulary is small, so the tests shrink `HEAD_PIECE_BYTES` until a piece holds
a few positions; every loss, LoRA (the output layer adapted too) and full weights, forward and
forward_backward, must then match an engine that computes the logits of a chunk at once, and no
output-layer product may hold more positions than a piece (apart from the body's last position);
with backward, the second run of the output layer covers only the positions the loss depends on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cookbook.client import types
from server_stub.models.builtin_tokenizer import BUILTIN_VOCAB_SIZE
from server_stub.torch_engine import TorchEngine
from server_stub.training import forward_backward

from .engine_helpers import TINY, forward_backward_counting_head, fwd, grads_of, rl_datum, sft_datum

ROWS_PER_PIECE = 2  # positions of every row per piece, with the shrunk piece budget below, for 3-row chunks
PIECE_BYTES = 4 * BUILTIN_VOCAB_SIZE * 3 * ROWS_PER_PIECE

DATA = [
    sft_datum([(5 * i + j) % 250 + 1 for j in range(6 + 3 * i)], [0.5 + j % 3 for j in range(5 + 3 * i)])
    for i in range(3)
]
RL_DATA = [
    rl_datum([(7 * i + j) % 250 + 1 for j in range(5 + 2 * i)], [-2.0] * (4 + 2 * i), [1.0 - i] * (4 + 2 * i))
    for i in range(3)
]


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[TorchEngine, TorchEngine]]:
    whole, pieces = (
        TorchEngine(tmp_path / "whole", device="cpu"),
        TorchEngine(tmp_path / "pieces", device="cpu"),
    )
    yield whole, pieces


def _create(engines: tuple[TorchEngine, TorchEngine], lora: types.LoraConfig | None) -> None:
    for engine in engines:
        engine.pass_token_budget = None  # one chunk of all 3 rows
        engine.create_model("m", TINY, lora, None)


@pytest.mark.parametrize(
    "lora", [types.LoraConfig(rank=4, train_unembed=True, seed=3), None], ids=["lora", "full"]
)
@pytest.mark.parametrize(("loss_fn", "data"), [("cross_entropy", DATA), ("importance_sampling", RL_DATA)])
@pytest.mark.parametrize("backward", [True, False])
def test_pieces_of_the_output_layer_match_one_product(
    engines,
    monkeypatch: pytest.MonkeyPatch,
    lora: types.LoraConfig | None,
    loss_fn: str,
    data,
    backward: bool,
) -> None:
    whole, pieces = engines
    _create(engines, lora)
    if lora is not None:  # a trained adapter, so the output layer's LoRA is not zero
        for engine in engines:
            engine.forward_backward("m", fwd(DATA), backward=True)
            engine.optim_step("m", types.AdamParams(learning_rate=5e-2))
            engine._models["m"].module().zero_grad()
    expected = whole.forward_backward("m", fwd(data, loss_fn), backward=backward)
    monkeypatch.setattr(forward_backward, "HEAD_PIECE_BYTES", PIECE_BYTES)
    got, tokens = forward_backward_counting_head(pieces, data, loss_fn, backward)
    assert got.metrics["loss:sum"] == pytest.approx(expected.metrics["loss:sum"], rel=1e-5)
    for a, b in zip(expected.loss_fn_outputs, got.loss_fn_outputs, strict=True):
        assert b["logprobs"].data == pytest.approx(a["logprobs"].data, rel=1e-5, abs=1e-6)
    longest, rows = max(d.model_input.length for d in data), len(data)
    active = sum(  # positions whose loss input is nonzero (every built-in loss's gradient is zero elsewhere)
        sum(w != 0 for w in d.loss_fn_inputs["weights" if loss_fn == "cross_entropy" else "advantages"].data)
        for d in data
    )
    # the body's last position of every row, then pieces (with backward, again at the active positions)
    assert tokens[0] == rows and max(tokens[1:]) <= rows * ROWS_PER_PIECE
    assert sum(tokens[1:]) == longest * rows + (active if backward else 0)
    if backward:  # sums in another order: equal to fp32 rounding at the gradient's scale
        for name, grad in grads_of(whole, "m").items():
            other = grads_of(pieces, "m")[name]
            assert grad is not None and other is not None, name
            assert torch.allclose(grad, other, rtol=1e-4, atol=1e-5 * float(grad.abs().max())), name


def test_piece_positions_follow_the_vocabulary_and_the_rows() -> None:
    budget = forward_backward.HEAD_PIECE_BYTES
    assert forward_backward.head_piece_positions(budget // 4, 1) == 1
    assert forward_backward.head_piece_positions(49152, 1) == budget // (4 * 49152)
    assert forward_backward.head_piece_positions(49152, 4) == budget // (4 * 49152 * 4)
    assert forward_backward.head_piece_positions(49152, 10_000) == 1  # never zero
