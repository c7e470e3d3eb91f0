"""Bad input gets a UserError naming the field, and the model stays usable and uncorrupted."""

from __future__ import annotations

import math

import pytest
import torch

from cookbook.client import types
from server_stub.engine import NotFoundError, UserError
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, grads_of, rl_datum, sft_datum, weights_of

GOOD = sft_datum([5, 17, 99, 230, 41, 8, 77])


def _datum(tokens: list[int], **inputs: object) -> types.Datum:
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs=inputs)


P = "forward_backward_input."
CASES = [
    (
        "cross_entropy",
        [GOOD, _datum([1, 2, 3], target_tokens=[2, 3, 4], weights=[1.0, 1.0])],
        None,
        P + "data.1.loss_fn_inputs.weights",
        "shape [2] != target_tokens shape [3]",
    ),
    (
        "cross_entropy",
        [_datum([1, 2, 3], target_tokens=[2, 3], weights=[1.0, 1.0])],
        None,
        P + "data.0.loss_fn_inputs.target_tokens",
        "length 2 != model_input length 3",
    ),
    (
        "cross_entropy",
        [_datum([1, 2, 600], target_tokens=[2, 3, 4], weights=[1.0] * 3)],
        None,
        P + "data.0.model_input",
        "token id 600 at position 2 is outside the vocabulary [0, 512)",
    ),
    (
        "cross_entropy",
        [_datum([1, 2**70], target_tokens=[2, 3], weights=[1.0] * 2)],
        None,
        P + "data.0.model_input",
        "is outside the vocabulary",
    ),
    (
        "cross_entropy",
        [_datum([1, 2, 3], target_tokens=[2, 3, -1], weights=[1.0] * 3)],
        None,
        P + "data.0.loss_fn_inputs.target_tokens",
        "token id -1",
    ),
    (
        "cross_entropy",
        [_datum([1, 2, 3], target_tokens=[2, 3, 4], weights=[1.0, math.nan, 1.0])],
        None,
        P + "data.0.loss_fn_inputs.weights",
        "non-finite value nan at position 1",
    ),
    (
        "cross_entropy",
        [_datum([1] * 513, target_tokens=[1] * 513, weights=[1.0] * 513)],
        None,
        P + "data.0.model_input",
        "sequence length 513 exceeds the model's context length 512",
    ),
    (
        "cross_entropy",
        [_datum([1, 2], target_tokens=[2, 3])],
        None,
        P + "data.0.loss_fn_inputs",
        "missing 'weights'",
    ),
    ("cross_entropy", [_datum([], target_tokens=[], weights=[])], None, P + "data.0.model_input", "is empty"),
    (
        "cross_entropy",
        [_datum([1, 2], target_tokens=[2, 3], weights=[1.0, 1.0], mask=[1.0, 1.0])],
        None,
        P + "data.0.loss_fn_inputs.mask",
        "is not an input of cross_entropy",
    ),
    ("cross_entropy", [], None, P + "data", "is empty"),
    ("cross_entropy", [GOOD], {"beta": 0.1}, P + "loss_fn_config.beta", "is not a setting of cross_entropy"),
    (
        "ppo",
        [rl_datum([1, 2, 3], [-1.0, -1.0], [1.0, 1.0])],
        {"clip_low_threshold": math.inf},
        P + "loss_fn_config.clip_low_threshold",
        "must be finite",
    ),
    (
        "ppo",
        [rl_datum([1, 2, 3], [-1.0, -1.0], [1.0])],
        None,
        P + "data.0.loss_fn_inputs.advantages",
        "length 1 != target length 2",
    ),
    (
        "importance_sampling",
        [_datum([1, 2], target_tokens=[[2, 3], [3, 4]], logprobs=[0.0, 0.0], advantages=[1.0, 1.0])],
        None,
        P + "data.0.loss_fn_inputs.target_tokens",
        "must be 1-D",
    ),
    (
        "importance_sampling",
        [rl_datum([1, 2, 3], [-1000.0, -1000.0], [1.0, 1.0])],
        None,
        "data",
        "the importance_sampling loss is not finite",
    ),
    ("kl", [GOOD], None, P + "loss_fn", "must be one of"),
]


@pytest.mark.parametrize(("loss_fn", "data", "config", "field", "message"), CASES)
def test_bad_training_input_is_refused_without_side_effects(
    engine: TorchEngine, loss_fn: str, data, config, field: str, message: str
) -> None:
    engine.create_model("m", TINY, None, None)
    engine.forward_backward("m", fwd([GOOD]), backward=True)
    grads_before, weights_before = grads_of(engine, "m"), weights_of(engine, "m")
    request = types.ForwardBackwardInput.model_construct(data=data, loss_fn=loss_fn, loss_fn_config=config)
    with pytest.raises(UserError) as info:
        engine.forward_backward("m", request, backward=True)
    assert info.value.field == field
    assert message in info.value.message
    grads_after = grads_of(engine, "m")
    assert all(torch.equal(grads_before[n], grads_after[n]) for n in grads_before)
    assert all(torch.equal(weights_before[n], w) for n, w in weights_of(engine, "m").items())
    out = engine.forward_backward("m", fwd([GOOD]), backward=True)  # still usable
    assert math.isfinite(out.metrics["loss:sum"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", -1.0),
        ("learning_rate", math.nan),
        ("beta1", 1.0),
        ("beta2", -0.1),
        ("eps", 0.0),
        ("weight_decay", -1.0),
        ("grad_clip_norm", math.inf),
    ],
)
def test_bad_adam_params(engine: TorchEngine, field: str, value: float) -> None:
    engine.create_model("m", TINY, None, None)
    engine.forward_backward("m", fwd([GOOD]), backward=True)
    before = weights_of(engine, "m")
    with pytest.raises(UserError) as info:
        engine.optim_step("m", types.AdamParams(**{field: value}))
    assert info.value.field == f"adam_params.{field}"
    assert all(torch.equal(before[n], w) for n, w in weights_of(engine, "m").items())
    assert engine.optim_step("m", types.AdamParams()).metrics["grad_norm"] > 0  # gradients were kept


def test_unknown_ids(engine: TorchEngine) -> None:
    for call in (
        lambda: engine.forward_backward("ghost", fwd([GOOD]), True),
        lambda: engine.optim_step("ghost", types.AdamParams()),
        lambda: engine.get_info("ghost"),
        lambda: engine.base_model_of("ghost"),
        lambda: engine.sampler_base_model("ghost"),
        lambda: engine.get_sampler("ghost"),
        lambda: engine.save_state("ghost", "x", False, None),
    ):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(UserError, match="base_model or model_path"):
        engine.create_sampler(None, None)


def test_get_info(engine: TorchEngine) -> None:
    engine.create_model("m", TINY, types.LoraConfig(rank=16), None)
    info = engine.get_info("m")
    assert (info.model_id, info.is_lora, info.lora_rank, info.model_data.model_name) == ("m", True, 16, TINY)
    assert engine.base_model_of("m") == TINY
