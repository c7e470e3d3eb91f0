"""The loss table is the one list of losses: the client's wire types agree with it, and every check the
server makes about losses follows from its rows (so a new row is validated, batched and run with no
other server edit)."""

from __future__ import annotations

import math
from typing import get_args

import pytest

from cookbook.client import types
from server_stub.engine import ModelLimits, UserError
from server_stub.torch_engine import TorchEngine
from server_stub.training.losses import LOSSES, PER_TARGET_INPUTS, TARGET_INPUT, Loss, cross_entropy
from server_stub.validation import check_forward_backward_input

from .engine_helpers import TINY, fwd

LIMITS = ModelLimits(vocab_size=512, max_context_length=512)
# The rows on the learner's target logprobs; the reward-head rows (ScoreLoss) have tests of their own.
TOKEN_LOSSES = {name: loss for name, loss in LOSSES.items() if isinstance(loss, Loss)}
TOKENS = [5, 17, 99, 230]
P = "forward_backward_input"


def _inputs(keys: tuple[str, ...]) -> dict[str, list[int] | list[float]]:
    """Per-token values a datum of TOKENS may carry for `keys` (sampler logprobs, unit advantages...)."""
    values: dict[str, list[int] | list[float]] = {TARGET_INPUT: TOKENS[1:]}
    for key in keys:
        if key != TARGET_INPUT:
            values[key] = [-1.0] * (len(TOKENS) - 1) if key == "logprobs" else [1.0] * (len(TOKENS) - 1)
    return values


def _datum(keys: tuple[str, ...], leave_out: str = "", targets_per_position: int = 1) -> types.Datum:
    """A datum with `keys` except `leave_out`; with several targets per position, target_tokens and the
    per-target inputs become [N, K]."""
    values = {k: v for k, v in _inputs(keys).items() if k != leave_out}
    for key in (TARGET_INPUT, *PER_TARGET_INPUTS):
        if targets_per_position > 1 and key in values:
            values[key] = [[value] * targets_per_position for value in values[key]]
    return types.Datum(model_input=types.ModelInput.from_ints(TOKENS[:-1]), loss_fn_inputs=values)


def test_the_client_loss_type_lists_the_table_rows_in_order() -> None:
    assert get_args(types.LossFnType) == types.LOSS_FN_NAMES == tuple(LOSSES)
    assert list(types.ForwardBackwardInput.model_json_schema()["properties"]["loss_fn"]["enum"]) == list(
        LOSSES
    )


def test_the_client_rl_losses_are_the_rows_that_read_advantages() -> None:
    policy_gradient = tuple(name for name, loss in LOSSES.items() if "advantages" in loss.required_inputs)
    assert get_args(types.RLLossFnType) == policy_gradient == types.RL_LOSS_FN_NAMES


def test_the_client_input_dtypes_are_the_table_inputs() -> None:
    table_inputs = {key for loss in LOSSES.values() for key in loss.inputs}
    assert set(types.LOSS_INPUT_DTYPES) == table_inputs
    assert {key for key, dtype in types.LOSS_INPUT_DTYPES.items() if dtype == "int64"} == {TARGET_INPUT}
    assert set(PER_TARGET_INPUTS) <= table_inputs


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
def test_each_row_accepts_its_required_and_optional_inputs_and_settings(name: str) -> None:
    loss = LOSSES[name]
    check_forward_backward_input(fwd([_datum(loss.required_inputs)], name), LIMITS)
    check_forward_backward_input(fwd([_datum(loss.inputs)], name, dict(loss.config_defaults)), LIMITS)


@pytest.mark.parametrize(
    ("name", "key"), [(n, k) for n, loss in TOKEN_LOSSES.items() for k in loss.required_inputs]
)
def test_each_required_input_is_required(name: str, key: str) -> None:
    with pytest.raises(UserError) as info:
        check_forward_backward_input(fwd([_datum(LOSSES[name].required_inputs, leave_out=key)], name), LIMITS)
    assert info.value.field == f"{P}.data.0.loss_fn_inputs"
    assert f"missing {key!r}, which {name} requires" in info.value.message


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
def test_each_row_refuses_inputs_and_settings_of_other_rows(name: str) -> None:
    loss = LOSSES[name]
    foreign_inputs = {k for other in LOSSES.values() for k in other.inputs} - set(loss.inputs)
    for key in sorted(foreign_inputs):
        with pytest.raises(UserError) as info:
            check_forward_backward_input(fwd([_datum((*loss.required_inputs, key))], name), LIMITS)
        assert info.value.field == f"{P}.data.0.loss_fn_inputs.{key}"
        assert f"is not an input of {name} (accepted: {', '.join(loss.inputs)})" in info.value.message
    foreign_settings = {k for other in LOSSES.values() for k in other.config_defaults} - set(
        loss.config_defaults
    )
    for key in sorted(foreign_settings):
        with pytest.raises(UserError) as info:
            check_forward_backward_input(fwd([_datum(loss.required_inputs)], name, {key: 1.0}), LIMITS)
        assert info.value.field == f"{P}.loss_fn_config.{key}"
        assert f"is not a setting of {name}" in info.value.message


def test_an_unknown_loss_is_refused_with_the_table_names() -> None:
    request = types.ForwardBackwardInput.model_construct(data=[_datum(("weights",))], loss_fn="kl")
    with pytest.raises(UserError) as info:
        check_forward_backward_input(request, LIMITS)
    assert info.value.field == f"{P}.loss_fn"
    assert f"must be one of {', '.join(LOSSES)}, got 'kl'" in info.value.message


def test_only_multi_target_rows_take_two_dimensional_targets() -> None:
    for name, loss in TOKEN_LOSSES.items():
        request = fwd([_datum(loss.required_inputs, targets_per_position=2)], name)
        if loss.multi_target:
            check_forward_backward_input(request, LIMITS)
        else:
            with pytest.raises(UserError) as info:
                check_forward_backward_input(request, LIMITS)
            assert info.value.field == f"{P}.data.0.loss_fn_inputs.{TARGET_INPUT}"
            assert "must be 1-D, got shape [3, 2]" in info.value.message


@pytest.mark.parametrize("name", list(TOKEN_LOSSES))
def test_each_row_runs_in_the_engine_with_its_defaults(engine: TorchEngine, name: str) -> None:
    engine.create_model("m", TINY, None, None)
    out = engine.forward_backward("m", fwd([_datum(LOSSES[name].required_inputs)], name), backward=True)
    assert math.isfinite(out.metrics["loss:sum"])
    assert len(out.loss_fn_outputs[0]["logprobs"].data) == len(TOKENS) - 1


def test_a_row_must_read_target_tokens_and_default_its_optional_inputs() -> None:
    with pytest.raises(ValueError, match="target_tokens"):
        Loss("no_targets", cross_entropy, ("weights",))
    with pytest.raises(ValueError, match="need a default"):
        Loss("no_default", cross_entropy, (TARGET_INPUT, "weights"), optional_inputs=("scale",))
