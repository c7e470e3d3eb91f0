"""Rows that begin alike run their common prefix once (server_stub/training/shared_prefix.py).

The grouping is checked on its own; then every pass that packs (a judge's forward, a preference-model
or RL training pass, LoRA or full weights, a reward head's scores and Bradley-Terry gradient, a row
recomputed in backward) must give what the same engine gives with packing turned off: the loss, every
logprob and every gradient, to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cookbook.client import types
from server_stub.torch_engine import TorchEngine
from server_stub.training import forward_backward, shared_prefix
from server_stub.training.batch import build_batches
from server_stub.training.shared_prefix import (
    MIN_SHARED_TOKENS,
    pack_rows,
    packed_length,
    prefix_groups,
    supports_shared_prefix,
    unpacked_hidden,
)

from .engine_helpers import TINY, fwd, grads_of, rl_datum, sft_datum

PROMPTS = [[(11 * p + j) % 240 + 3 for j in range(14 + 3 * p)] for p in range(4)]
ANSWERS = [[(17 * a + 5 * j) % 240 + 3 for j in range(4 + (a % 3) * 3)] for a in range(8)]


def _judge_rows() -> list[list[int]]:
    """A preference-model batch: each prompt with two answers, in both orders, then a verdict token."""
    rows = []
    for p, prompt in enumerate(PROMPTS):
        first, second = ANSWERS[2 * p], ANSWERS[2 * p + 1]
        rows += [prompt + first + [1] + second + [2], prompt + second + [1] + first + [2]]
    return rows


def _verdict_datum(tokens: list[int]) -> types.Datum:
    return sft_datum(tokens, [0.0] * (len(tokens) - 2) + [1.0])


def _policy_datum(prompt: list[int], answer: list[int], advantage: float) -> types.Datum:
    tokens = prompt + answer
    n = len(tokens) - 1
    advantages = [0.0] * (len(prompt) - 1) + [advantage] * len(answer)
    return rl_datum(tokens, [-1.5] * n, advantages)


JUDGE = [_verdict_datum(row) for row in _judge_rows()]
POLICY = [  # an RL step: four answers to each prompt
    _policy_datum(prompt, ANSWERS[(p + k) % 8], 1.0 - 0.5 * k)
    for p, prompt in enumerate(PROMPTS)
    for k in range(4)
]
SFT = [sft_datum(ANSWERS[a] + PROMPTS[a % 4]) for a in range(8)]  # no two alike at the start


def test_rows_with_a_common_prompt_are_grouped_and_others_stay_alone() -> None:
    rows = _judge_rows()
    groups = prefix_groups(rows)
    assert sorted(sorted(members) for members, _ in groups) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    for members, shared in groups:
        assert shared >= len(PROMPTS[members[0] // 2])  # at least the prompt
        assert all(rows[i][:shared] == rows[members[0]][:shared] for i in members)
    short = [[9] * (MIN_SHARED_TOKENS - 1) + [1, 2, 3], [9] * (MIN_SHARED_TOKENS - 1) + [4, 5, 6]]
    assert prefix_groups(short) == [([0], 0), ([1], 0)]


def test_identical_rows_keep_their_last_token_of_their_own() -> None:
    row = list(range(3, 3 + 2 * MIN_SHARED_TOKENS))
    [(members, shared)] = prefix_groups([row, list(row)])
    assert sorted(members) == [0, 1] and shared == len(row) - 1


def test_a_packed_row_stays_within_twice_its_longest_row() -> None:
    prompt = list(range(3, 3 + MIN_SHARED_TOKENS))
    rows = [prompt + [100 + k] * 10 for k in range(4)]  # 18 tokens each, 8 shared
    groups = prefix_groups(rows)
    assert [len(members) for members, _ in groups] == [2, 2]  # 8 + 3 x 10 = 38 would pass 2 x 18


def test_a_packed_row_is_never_longer_than_a_pass_piece() -> None:
    rows = _judge_rows()
    longest = max(map(len, rows))
    assert all(len(members) == 1 for members, _ in prefix_groups(rows, max_tokens=longest))
    assert len(prefix_groups(rows, max_tokens=2 * longest)) == len(PROMPTS)


def test_nothing_is_packed_when_it_saves_too_little() -> None:
    rows = [[5] * MIN_SHARED_TOKENS + [k] * 60 for k in (6, 7)]  # 8 of 68 tokens shared
    assert pack_rows(rows, prefix_groups(rows), torch.device("cpu")) is None
    alone = [[6, 7, 8], [9, 10]]
    assert pack_rows(alone, prefix_groups(alone), torch.device("cpu")) is None


def test_the_packed_body_gives_every_row_its_own_hidden_states() -> None:
    from server_stub.models.tiny_llama import build_tiny_llama

    model = build_tiny_llama(torch.device("cpu"), torch.float32)
    assert supports_shared_prefix(model)
    rows = _judge_rows()
    shared = pack_rows(rows, prefix_groups(rows), torch.device("cpu"))
    assert shared is not None and shared.input_ids.numel() < len(rows) * max(map(len, rows))
    with torch.no_grad():
        packed = unpacked_hidden(model.get_decoder(), shared)
        for i, row in enumerate(rows):
            alone = model.get_decoder()(input_ids=torch.tensor([row]), use_cache=False).last_hidden_state
            assert torch.allclose(packed[i, : len(row)], alone[0], atol=1e-5), i


def test_the_packed_gradient_is_the_same_bits_every_time() -> None:
    """Three rows share each prefix, and the states are large enough (over torch's 32k-element grain) that
    an indexed read's backward would add the rows' prefix gradients with parallel atomic adds, in an
    order that changes from run to run; the packed body's backward must not."""
    from server_stub.models.tiny_llama import build_tiny_llama

    torch.set_num_threads(2)
    model = build_tiny_llama(torch.device("cpu"), torch.float32).train()
    prompts = [[(13 * p + j) % 240 + 3 for j in range(40)] for p in range(9)]
    rows = [prompt + [100 + 7 * k + j for j in range(12)] for prompt in prompts for k in range(3)]
    shared = pack_rows(rows, prefix_groups(rows), torch.device("cpu"))
    assert shared is not None and shared.gather.numel() * model.config.hidden_size > 32768
    weights = torch.randn(
        len(rows), max(map(len, rows)), model.config.hidden_size, generator=torch.Generator().manual_seed(1)
    )
    gradients = set()
    for _ in range(40):
        model.zero_grad()
        hidden = unpacked_hidden(model.get_decoder(), shared)
        steps = [hidden.grad_fn, *(f for f, _ in hidden.grad_fn.next_functions)]  # type: ignore[union-attr]
        assert "IndexSelectBackward0" in {type(f).__name__ for f in steps if f is not None}
        (hidden * weights).sum().backward()
        flat = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        gradients.add(flat.numpy().tobytes())
    assert len(gradients) == 1


def test_a_family_not_known_to_honour_the_mask_is_never_packed() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64))
    assert not supports_shared_prefix(gpt2)


def _engine(tmp_path: Path, name: str, lora: types.LoraConfig | None, head: bool = False) -> TorchEngine:
    engine = TorchEngine(tmp_path / name, device="cpu")
    engine.create_model("m", TINY, lora, None, reward_head=head)
    if lora is not None:  # a trained adapter, so every LoRA product is nonzero
        engine.forward_backward("m", fwd(SFT), backward=True)
        engine.optim_step("m", types.AdamParams(learning_rate=5e-2))
        engine._models["m"].module().zero_grad()
    if head:  # a nonzero head, so scores and their gradient reach the body
        with torch.no_grad():
            engine._models["m"].reward_head.normal_(generator=torch.Generator().manual_seed(0))  # type: ignore[union-attr]
    return engine


def _packed_chunks(engine: TorchEngine, data: list[types.Datum], loss_fn: str = "cross_entropy") -> int:
    model = engine._models["m"]
    chunks = build_batches(
        fwd(data, loss_fn),
        engine.model_limits(model.base_model),
        engine.device,
        *engine.pass_sizes(model, True),
        share_prefixes=engine.share_prefixes and supports_shared_prefix(model.module()),  # as the engine does
    )
    return sum(batch.shared is not None for _, batch in chunks)


def _same_pass(
    tmp_path: Path,
    data: list[types.Datum],
    loss_fn: str,
    backward: bool,
    lora: types.LoraConfig | None,
    head: bool = False,
) -> None:
    packed, plain = _engine(tmp_path, "packed", lora, head), _engine(tmp_path, "plain", lora, head)
    assert _packed_chunks(packed, data, loss_fn) > 0  # the case under test really packs
    got = packed.forward_backward("m", fwd(data, loss_fn), backward=backward)
    plain.share_prefixes = False
    assert _packed_chunks(plain, data, loss_fn) == 0
    expected = plain.forward_backward("m", fwd(data, loss_fn), backward=backward)
    assert got.metrics["loss:sum"] == pytest.approx(expected.metrics["loss:sum"], rel=1e-5, abs=1e-6)
    for a, b in zip(expected.loss_fn_outputs, got.loss_fn_outputs, strict=True):
        for key, value in a.items():
            assert b[key].data == pytest.approx(value.data, rel=1e-5, abs=1e-5), key
    if backward:
        for name, grad in grads_of(plain, "m").items():
            other = grads_of(packed, "m")[name]
            assert (grad is None) == (other is None), name  # a reward head's model never runs lm_head
            if grad is not None and other is not None:
                assert torch.allclose(grad, other, rtol=1e-4, atol=1e-5 * float(grad.abs().max())), name


LORA = types.LoraConfig(rank=4, train_unembed=True, seed=3)


@pytest.mark.parametrize("lora", [LORA, None], ids=["lora", "full"])
@pytest.mark.parametrize(
    ("loss_fn", "data", "backward"),
    [
        ("cross_entropy", JUDGE, False),
        ("cross_entropy", JUDGE, True),
        ("importance_sampling", POLICY, True),
        ("ppo", POLICY, True),
    ],
    ids=["judge-forward", "judge-training", "rl-is", "rl-ppo"],
)
def test_a_packed_pass_equals_the_unpacked_one(
    tmp_path: Path,
    lora: types.LoraConfig | None,
    loss_fn: str,
    data: list[types.Datum],
    backward: bool,
) -> None:
    _same_pass(tmp_path, data, loss_fn, backward, lora)


def _score_datum(tokens: list[int]) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs={})


def test_reward_head_scores_and_bradley_terry_gradient_equal_the_unpacked_ones(tmp_path: Path) -> None:
    pairs = [_score_datum(row) for row in _judge_rows()]  # chosen then rejected: each pair shares its prompt
    _same_pass(tmp_path, pairs, "bradley_terry", True, LORA, head=True)


def test_a_packed_row_recomputed_in_backward_gives_the_same_gradient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _judge_rows()
    # A cap that the largest packed pair just fits, and that the same pair unpacked exceeds.
    cap = max(packed_length(rows, members, shared) for members, shared in prefix_groups(rows))
    monkeypatch.setattr(TorchEngine, "activation_cap", lambda self, model: cap)
    recomputed: list[bool] = []
    original = forward_backward.layers_recomputed
    monkeypatch.setattr(
        forward_backward,
        "layers_recomputed",
        lambda module, recompute=True: recomputed.append(recompute) or original(module, recompute),
    )
    _same_pass(tmp_path, JUDGE, "cross_entropy", True, None)
    assert any(recomputed)


def test_sft_rows_that_share_nothing_run_unpacked(tmp_path: Path) -> None:
    assert _packed_chunks(_engine(tmp_path, "e", None), SFT) == 0


def test_the_saving_threshold_is_what_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(tmp_path, "e", None)
    assert _packed_chunks(engine, JUDGE) > 0
    monkeypatch.setattr(shared_prefix, "MIN_SAVED_FRACTION", 0.99)
    assert _packed_chunks(engine, JUDGE) == 0
