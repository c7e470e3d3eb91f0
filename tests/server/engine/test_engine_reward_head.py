"""The scalar reward head: its Bradley-Terry loss and gradient match plain PyTorch, it survives a server
restart through checkpoints, and the engine refuses what it cannot score."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.model_from_checkpoint import create_from_checkpoint
from server_stub.torch_engine import TorchEngine
from server_stub.training.reward_head import REWARD_HEAD_WEIGHT

from .engine_helpers import TINY, fwd, grads_of, sft_datum

# Two [chosen, rejected] pairs of different lengths, so batches pad and chunks split.
PAIRS = [[5, 17, 99, 230, 41], [5, 17, 98], [12, 7, 7, 300, 2, 9, 33], [12, 7, 8, 1]]
LORA = types.LoraConfig(rank=4, seed=3)


def score_datum(tokens: list[int]) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs={})


def scores_of(engine: TorchEngine, model_id: str, sequences: list[list[int]]) -> list[float]:
    result = engine.forward_backward(
        model_id, fwd([score_datum(s) for s in sequences], "reward_score"), backward=False
    )
    return [o[types.REWARD_SCORE_OUTPUT].data[0] for o in result.loss_fn_outputs]


def _randomize_head(engine: TorchEngine, model_id: str, seed: int = 0) -> None:
    head = engine._models[model_id].reward_head
    assert head is not None
    with torch.no_grad():
        head.copy_(torch.randn(head.shape, generator=torch.Generator().manual_seed(seed)))


def _reference_loss(
    module: torch.nn.Module, head: torch.Tensor, margin: float, centering: float
) -> torch.Tensor:
    """Bradley-Terry in plain PyTorch: each sequence alone, the full model's last hidden state at its last token."""
    scores = []
    for tokens in PAIRS:
        out = module(input_ids=torch.tensor([tokens]), output_hidden_states=True)
        scores.append(out.hidden_states[-1][0, -1].float() @ head[0].float())
    r = torch.stack(scores)
    chosen, rejected = r[0::2], r[1::2]
    return (
        -torch.log(torch.sigmoid(chosen - rejected - margin)).sum()
        + centering * ((chosen + rejected) ** 2).sum()
    )


@pytest.mark.parametrize("max_pass_tokens", [4096, 8])
def test_bradley_terry_loss_and_gradient_equal_a_plain_pytorch_reference(
    tmp_path: Path, max_pass_tokens: int
) -> None:
    engine = TorchEngine(tmp_path / "storage", device="cpu", max_pass_tokens=max_pass_tokens)
    engine.create_model("rm", TINY, None, None, reward_head=True)
    _randomize_head(engine, "rm")
    model = engine._models["rm"]
    reference_module = copy.deepcopy(model.module())
    reference_head = model.reward_head.detach().clone().requires_grad_(True)  # type: ignore[union-attr]
    config = {"margin": 0.5, "centering_coef": 0.01}

    out = engine.forward_backward("rm", fwd([score_datum(s) for s in PAIRS], "bradley_terry", config), True)

    reference = _reference_loss(reference_module, reference_head, 0.5, 0.01)
    reference.backward()
    assert out.metrics["loss:sum"] == pytest.approx(float(reference.detach()), rel=1e-5)
    assert out.metrics["pairs:sum"] == 2
    grads = grads_of(engine, "rm")
    assert torch.allclose(grads[REWARD_HEAD_WEIGHT], reference_head.grad, rtol=1e-4, atol=1e-6)  # type: ignore[arg-type]
    reference_grads = dict(reference_module.named_parameters())
    body = [name for name in grads if name != REWARD_HEAD_WEIGHT]
    assert body and all(grads[name] is not None for name in body)
    for name in body:
        expected = reference_grads[name].grad
        assert expected is not None and grads[name] is not None
        scale = float(expected.abs().max())
        assert float((grads[name] - expected).abs().max()) <= 1e-4 * scale + 1e-7, name


def test_scores_read_one_number_per_datum_at_its_last_token(engine: TorchEngine) -> None:
    engine.create_model("rm", TINY, LORA, None, reward_head=True)
    assert scores_of(engine, "rm", PAIRS) == [0.0] * 4  # a new head starts at zero
    _randomize_head(engine, "rm")
    together = scores_of(engine, "rm", PAIRS)
    alone = [scores_of(engine, "rm", [s])[0] for s in PAIRS]
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert len(set(together)) == 4


def test_training_the_head_ranks_chosen_above_rejected(engine: TorchEngine) -> None:
    engine.create_model("rm", TINY, LORA, None, reward_head=True)
    data = fwd([score_datum(s) for s in PAIRS], "bradley_terry")
    first = engine.forward_backward("rm", data, backward=True)
    for _ in range(10):
        engine.optim_step("rm", types.AdamParams(learning_rate=1e-2))
        last = engine.forward_backward("rm", data, backward=True)
    assert last.metrics["loss:sum"] < first.metrics["loss:sum"]
    assert last.metrics["correct_pairs:sum"] == 2
    assert engine.get_info("rm").reward_head is True


@pytest.mark.parametrize("lora", [LORA, None])
def test_save_restart_load_gives_identical_scores(tmp_path: Path, lora: types.LoraConfig | None) -> None:
    storage = tmp_path / "storage"
    first = TorchEngine(storage, device="cpu")
    first.create_model("rm", TINY, lora, None, reward_head=True)
    data = fwd([score_datum(s) for s in PAIRS], "bradley_terry")
    for _ in range(3):
        first.forward_backward("rm", data, backward=True)
        first.optim_step("rm", types.AdamParams(learning_rate=1e-2))
    state = first.save_state("rm", "trained", overwrite=False, ttl_seconds=None).path
    sampler = first.save_sampler_weights("rm", "trained", ttl_seconds=None).path
    expected = scores_of(first, "rm", PAIRS)
    assert expected != [0.0] * 4
    del first

    restarted = TorchEngine(storage, device="cpu")
    info = restarted.weights_info(state)
    assert info.reward_head is True
    restarted.create_model("again", TINY, lora, None, reward_head=True)
    restarted.load_state("again", state, optimizer=True)
    assert scores_of(restarted, "again", PAIRS) == expected
    create_from_checkpoint(restarted, "in-one-call", state, info, optimizer=False, user_metadata=None)
    assert scores_of(restarted, "in-one-call", PAIRS) == expected
    assert sampler is not None and restarted.weights_info(sampler).reward_head is True
    restarted.create_sampler(None, sampler)  # the sampler reads the body; the head stays out of its way


def test_a_reward_model_starts_from_a_head_less_checkpoint(engine: TorchEngine) -> None:
    engine.create_model("policy", TINY, LORA, None)
    engine.forward_backward("policy", fwd([sft_datum([5, 6, 7, 8])]), backward=True)
    engine.optim_step("policy", types.AdamParams(learning_rate=1e-2))
    sft = engine.save_state("policy", "sft", overwrite=False, ttl_seconds=None).path
    engine.create_model("rm", TINY, LORA, None, reward_head=True)
    engine.load_state("rm", sft, optimizer=False)
    assert scores_of(engine, "rm", PAIRS) == [0.0] * 4
    rm_body = engine._models["rm"].body_params
    for name, param in engine._models["policy"].body_params.items():
        assert torch.equal(param, rm_body[name])


def test_the_engine_refuses_what_it_cannot_score(engine: TorchEngine) -> None:
    engine.create_model("plain", TINY, None, None)
    engine.create_model("rm", TINY, None, None, reward_head=True)
    cases = [
        ("plain", fwd([score_datum(s) for s in PAIRS], "bradley_terry"), True, "has none"),
        ("plain", fwd([score_datum(PAIRS[0])], "reward_score"), False, "has none"),
        ("rm", fwd([score_datum(s) for s in PAIRS[:3]], "bradley_terry"), True, "no rejected side"),
        ("rm", fwd([score_datum(PAIRS[0])], "reward_score"), True, "send it to forward"),
        ("rm", fwd([sft_datum(PAIRS[0]), sft_datum(PAIRS[1])], "bradley_terry"), True, "is not an input"),
    ]
    for model_id, request, backward, problem in cases:
        with pytest.raises(UserError, match=problem):
            engine.forward_backward(model_id, request, backward=backward)
    state = engine.save_state("rm", "rm", overwrite=False, ttl_seconds=None).path
    with pytest.raises(UserError, match="has no reward head"):
        engine.load_state("plain", state, optimizer=False)
