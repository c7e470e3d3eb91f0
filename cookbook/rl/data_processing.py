"""From trajectories to training Datums for the RL losses (importance_sampling, ppo, cispo, dro).

Layout of one Datum (next-token aligned, like every Datum: input position i predicts target i):

    sequence        = observation tokens + action tokens (+ next observation + action ... )
    model_input     = sequence[:-1]
    target_tokens   = sequence[1:]
    logprobs        = the sampler's logprob where the target is an action token, 0 elsewhere
    advantages      = the trajectory's advantage where the target is an action token, 0 elsewhere
    mask            = 1 where the target is an action token (local only: stripped before sending)

Observation tokens are context, never trained: their zero advantage removes them from the
policy-gradient losses. The tokens are exactly the ones sampled (token-in/token-out).

Multi-turn episodes become one Datum as long as each observation extends the sequence so far
(the usual chat case); an observation that does not starts a new Datum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cookbook.client.types import Datum, ModelInput, TensorData
from cookbook.rl.types import Trajectory, TrajectoryGroup

MASK_KEY = "mask"
"""The local loss input marking action tokens; metrics use it, the server never sees it."""


@dataclass(frozen=True)
class DatumOwner:
    """Which trajectory a Datum came from: group `group_idx` of the batch, member `traj_idx`."""

    group_idx: int
    traj_idx: int


@dataclass
class _Sequence:
    """A training sequence under construction: per token, its sampler logprob and whether it is an action."""

    tokens: list[int]
    logprobs: list[float]
    is_action: list[float]

    def add(self, tokens: Sequence[int], logprobs: Sequence[float] | None) -> None:
        self.tokens += tokens
        self.logprobs += [0.0] * len(tokens) if logprobs is None else list(logprobs)
        self.is_action += [0.0 if logprobs is None else 1.0] * len(tokens)


def trajectory_to_data(trajectory: Trajectory, advantage: float) -> list[Datum]:
    """The Datums of one trajectory (one per run of observations that extend each other).

    Each keeps the local `mask` key; strip it with `remove_mask` before sending.
    """
    sequences: list[_Sequence] = []
    current: _Sequence | None = None
    for turn, transition in enumerate(trajectory.transitions):
        ob_tokens = transition.ob.to_ints()
        if current is not None and ob_tokens[: len(current.tokens)] == current.tokens:
            current.add(ob_tokens[len(current.tokens) :], None)
        else:
            if not ob_tokens:
                raise ValueError(
                    f"turn {turn}: an observation must hold at least one token (the first "
                    f"sampled token needs a prefix to be predicted from)"
                )
            current = _Sequence([], [], [])
            sequences.append(current)
            current.add(ob_tokens, None)
        current.add(transition.ac.tokens, transition.ac.logprobs)
    return [_datum(seq, advantage) for seq in sequences if any(seq.is_action)]


def _datum(seq: _Sequence, advantage: float) -> Datum:
    mask_T = np.asarray(seq.is_action[1:], dtype=np.float32)
    return Datum(
        model_input=ModelInput.from_ints(seq.tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.asarray(seq.tokens[1:], dtype=np.int64),
            "logprobs": np.asarray(seq.logprobs[1:], dtype=np.float32),
            "advantages": mask_T * np.float32(advantage),
            MASK_KEY: mask_T,
        },
    )


def assemble_training_data(
    groups_P: Sequence[TrajectoryGroup],
    advantages_P: Sequence[Sequence[float]],
) -> tuple[list[Datum], list[DatumOwner]]:
    """Every trajectory's Datums for a batch, with the trajectory each Datum belongs to."""
    if len(groups_P) != len(advantages_P):
        raise ValueError(f"{len(groups_P)} groups but {len(advantages_P)} advantage lists")
    data_D: list[Datum] = []
    owners_D: list[DatumOwner] = []
    for p, (group, advantages_G) in enumerate(zip(groups_P, advantages_P, strict=True)):
        if len(advantages_G) != len(group.trajectories_G):
            raise ValueError(
                f"group {p}: {len(advantages_G)} advantages for {len(group.trajectories_G)} trajectories"
            )
        for g, (trajectory, advantage) in enumerate(zip(group.trajectories_G, advantages_G, strict=True)):
            for datum in trajectory_to_data(trajectory, float(advantage)):
                data_D.append(datum)
                owners_D.append(DatumOwner(group_idx=p, traj_idx=g))
    return data_D, owners_D


def loss_input(datum: Datum, key: str) -> np.ndarray:
    """One loss input of a Datum as a numpy array (KeyError naming what the Datum does have)."""
    if key not in datum.loss_fn_inputs:
        raise KeyError(f"the datum has no {key!r} loss input (it has {sorted(datum.loss_fn_inputs)})")
    return datum.loss_fn_inputs[key].to_numpy()


def with_advantages(datum: Datum, advantages_T: np.ndarray) -> Datum:
    """A copy of the Datum with new per-token advantages (same length as its targets)."""
    n_targets = len(datum.loss_fn_inputs["target_tokens"].data)
    if advantages_T.shape != (n_targets,):
        raise ValueError(f"advantages shape {advantages_T.shape} != ({n_targets},) target tokens")
    inputs = dict(datum.loss_fn_inputs)
    inputs["advantages"] = TensorData.from_numpy(advantages_T.astype(np.float32))
    return Datum(model_input=datum.model_input, loss_fn_inputs=inputs)


def remove_mask(datum: Datum) -> Datum:
    """The Datum as the server should get it: without the local `mask` key."""
    return Datum(
        model_input=datum.model_input,
        loss_fn_inputs={k: v for k, v in datum.loss_fn_inputs.items() if k != MASK_KEY},
    )


def full_sequence(datum: Datum) -> ModelInput:
    """All the tokens of a Datum's sequence (its input plus the last target), e.g. to score it."""
    targets = datum.loss_fn_inputs["target_tokens"].data
    if not targets:
        raise ValueError("the datum has no target tokens")
    return datum.model_input.append_int(int(targets[-1]))
