"""trajectory_to_data: the exact sampled tokens, and logprobs/advantages aligned with the targets they score."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.rl.data_processing import (
    MASK_KEY,
    DatumOwner,
    assemble_training_data,
    full_sequence,
    loss_input,
    remove_mask,
    trajectory_to_data,
    with_advantages,
)

from .builders import group, trajectory, turn


def test_single_turn_layout_is_shifted_by_one_token() -> None:
    # observation [5, 6, 7], sampled [40, 41, 42] with logprobs -0.5, -0.6, -0.7
    traj = trajectory(turn([5, 6, 7], [40, 41, 42], logprobs=[-0.5, -0.6, -0.7]))
    [datum] = trajectory_to_data(traj, advantage=2.0)

    assert datum.model_input.to_ints() == [5, 6, 7, 40, 41]
    assert loss_input(datum, "target_tokens").tolist() == [6, 7, 40, 41, 42]
    # Position i of the input predicts target i: the sampler's logprob of target i sits at i.
    np.testing.assert_allclose(loss_input(datum, "logprobs"), [0, 0, -0.5, -0.6, -0.7], rtol=1e-6)
    np.testing.assert_allclose(loss_input(datum, "advantages"), [0, 0, 2, 2, 2])
    assert loss_input(datum, MASK_KEY).tolist() == [0, 0, 1, 1, 1]
    assert loss_input(datum, "target_tokens").dtype == np.int64
    assert loss_input(datum, "logprobs").dtype == np.float32


def test_full_sequence_is_observation_plus_sampled_tokens() -> None:
    [datum] = trajectory_to_data(trajectory(turn([5, 6], [40, 0])), advantage=1.0)
    assert full_sequence(datum).to_ints() == [5, 6, 40, 0]


def test_turns_that_extend_the_sequence_share_one_datum() -> None:
    # Turn 2's observation = turn 1's sequence + [8, 9] (e.g. a user message).
    traj = trajectory(
        turn([5, 6], [40, 41], logprobs=[-1.0, -2.0]), turn([5, 6, 40, 41, 8, 9], [50], logprobs=[-3.0])
    )
    [datum] = trajectory_to_data(traj, advantage=-0.5)
    assert datum.model_input.to_ints() == [5, 6, 40, 41, 8, 9]
    assert loss_input(datum, "target_tokens").tolist() == [6, 40, 41, 8, 9, 50]
    assert loss_input(datum, MASK_KEY).tolist() == [0, 1, 1, 0, 0, 1]
    np.testing.assert_allclose(loss_input(datum, "logprobs"), [0, -1, -2, 0, 0, -3])
    np.testing.assert_allclose(loss_input(datum, "advantages"), [0, -0.5, -0.5, 0, 0, -0.5])


def test_an_observation_that_does_not_extend_starts_a_new_datum() -> None:
    traj = trajectory(turn([5, 6], [40]), turn([7, 8], [50, 51]))
    first, second = trajectory_to_data(traj, advantage=1.0)
    assert first.model_input.to_ints() == [5, 6] and loss_input(first, "target_tokens").tolist() == [6, 40]
    assert second.model_input.to_ints() == [7, 8, 50]
    assert loss_input(second, "target_tokens").tolist() == [8, 50, 51]


def test_empty_observation_is_refused_and_empty_actions_give_no_datum() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        trajectory_to_data(trajectory(turn([], [40, 41])), advantage=1.0)
    assert trajectory_to_data(trajectory(turn([5, 6], [])), advantage=1.0) == []


def test_remove_mask_keeps_only_what_the_server_reads() -> None:
    [datum] = trajectory_to_data(trajectory(turn([5, 6], [40])), advantage=1.0)
    sent = remove_mask(datum)
    assert set(sent.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"}
    assert sent.model_input == datum.model_input


def test_with_advantages_replaces_only_the_advantages() -> None:
    [datum] = trajectory_to_data(trajectory(turn([5, 6], [40, 41])), advantage=1.0)
    updated = with_advantages(datum, np.array([0.0, 0.25, -0.5]))
    np.testing.assert_allclose(loss_input(updated, "advantages"), [0, 0.25, -0.5])
    assert loss_input(updated, "target_tokens").tolist() == loss_input(datum, "target_tokens").tolist()
    with pytest.raises(ValueError, match="target tokens"):
        with_advantages(datum, np.zeros(5))


def test_assemble_training_data_records_each_datums_trajectory() -> None:
    groups = [group([1.0, 0.0]), group([0.0, 0.0, 3.0])]
    data, owners = assemble_training_data(groups, [[0.5, -0.5], [-1.0, -1.0, 2.0]])
    assert owners == [
        DatumOwner(0, 0),
        DatumOwner(0, 1),
        DatumOwner(1, 0),
        DatumOwner(1, 1),
        DatumOwner(1, 2),
    ]
    assert [float(loss_input(d, "advantages")[-1]) for d in data] == [0.5, -0.5, -1.0, -1.0, 2.0]
    with pytest.raises(ValueError, match="advantages"):
        assemble_training_data(groups, [[0.5, -0.5], [1.0]])
