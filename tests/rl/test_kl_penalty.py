"""KL penalty arithmetic in both modes, through build_training_batch.

The reference policy is a table-driven SamplingClient: it isolates the arithmetic from the
server (the integration test runs the same code against the real server's compute_logprobs);
the last test checks a training-client reference's forward pass against its sampler's logprobs.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cookbook.client.abstract import SamplingClient, ServiceClient
from cookbook.client.types import ModelInput, SampledSequence, SampleResponse, SamplingParams
from cookbook.rl.data_processing import MASK_KEY, DatumOwner, assemble_training_data, loss_input
from cookbook.rl.kl_penalty import compute_reference_logprobs, sequence_kl_estimates
from cookbook.rl.training_batch import TrainingBatch, build_training_batch
from cookbook.rl.types import TrajectoryGroup

from .builders import trajectory, turn

PROMPT = [1, 2, 3]


class TableReference(SamplingClient):
    """Answers compute_logprobs from a table: full token sequence -> reference logprob of each token."""

    def __init__(self, table: dict[tuple[int, ...], list[float]]):
        self.table = table
        self.scored: list[list[int]] = []

    async def sample_async(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> SampleResponse:
        assert include_prompt_logprobs
        tokens = prompt.to_ints()
        self.scored.append(tokens)
        logprobs: list[float | None] = [None, *self.table[tuple(tokens)][1:]]
        return SampleResponse(
            sequences=[SampledSequence(stop_reason="length", tokens=[0])], prompt_logprobs=logprobs
        )

    async def get_base_model_async(self) -> str:
        return "table"

    async def get_tokenizer_async(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def two_member_group() -> TrajectoryGroup:
    """Env rewards 1 and 0; sampler logprobs -0.1, -0.2 on both members' two action tokens."""
    return TrajectoryGroup(
        trajectories_G=[
            trajectory(turn(PROMPT, [10, 11], [-0.1, -0.2], reward=1.0)),
            trajectory(turn(PROMPT, [12, 13], [-0.1, -0.2], reward=0.0)),
        ],
        final_rewards_G=[0.0, 0.0],
        metrics_G=[{}, {}],
    )


# log ref of the action tokens: member 0 [-0.6, -0.7] -> d = [0.5, 0.5]; member 1 [-0.1, -0.4] -> d = [0, 0.2]
REFERENCE = {
    (*PROMPT, 10, 11): [0.0, -9.0, -9.0, -0.6, -0.7],
    (*PROMPT, 12, 13): [0.0, -9.0, -9.0, -0.1, -0.4],
}


def build(coef: float, mode: str, reference: SamplingClient | None = None, **kwargs: bool) -> TrainingBatch:
    return asyncio.run(
        build_training_batch(
            [two_member_group()],
            reference=reference or TableReference(REFERENCE),
            kl_penalty_coef=coef,
            kl_penalty_mode=mode,  # type: ignore[arg-type]
            **kwargs,
        )
    )


def action_advantages(batch: TrainingBatch) -> list[list[float]]:
    return [
        loss_input(d, "advantages")[loss_input(d, MASK_KEY) > 0].astype(np.float64).round(6).tolist()
        for d in batch.data_D
    ]


def test_sequence_mode_subtracts_coef_times_summed_log_ratio_from_the_reward() -> None:
    batch = build(0.5, "sequence")
    # r_KL = sum(d) = 1.0 and 0.2; penalised rewards 1 - 0.5 = 0.5 and 0 - 0.1 = -0.1; mean 0.2
    np.testing.assert_allclose(batch.kl_penalties_P[0], [0.5, 0.1])  # type: ignore[index]
    np.testing.assert_allclose(batch.rewards_P[0], [0.5, -0.1])
    np.testing.assert_allclose(batch.env_rewards_P[0], [1.0, 0.0])
    assert action_advantages(batch) == [[0.3, 0.3], [-0.3, -0.3]]
    # Observation positions stay at zero advantage.
    assert [loss_input(d, "advantages")[:2].tolist() for d in batch.data_D] == [[0, 0], [0, 0]]
    metrics = batch.metrics()
    assert metrics["kl_policy_ref"] == pytest.approx(0.3)  # mean of d over the 4 action tokens
    assert metrics["env/all/reward/kl_penalty"] == pytest.approx(0.3)
    assert (
        metrics["env/all/reward/kl_penalty_min"],
        metrics["env/all/reward/kl_penalty_max"],
    ) == pytest.approx((0.1, 0.5))
    assert metrics["env/all/reward/penalized"] == pytest.approx(0.2)


def test_token_mode_adds_coef_times_mean_minus_token_log_ratio() -> None:
    batch = build(0.5, "token")
    # Unpenalised advantages +-0.5; mean(d) = 0.3; A_t += 0.5 * (0.3 - d_t)
    assert action_advantages(batch) == [[0.4, 0.4], [-0.35, -0.45]]
    assert batch.kl_penalties_P is None
    assert batch.metrics()["kl_policy_ref"] == pytest.approx(0.3)


def test_reference_scores_exactly_the_trained_sequences() -> None:
    reference = TableReference(REFERENCE)
    build(0.5, "sequence", reference)
    assert sorted(reference.scored) == [[*PROMPT, 10, 11], [*PROMPT, 12, 13]]


def test_zero_coef_logs_the_kl_but_leaves_advantages_alone() -> None:
    batch = build(0.0, "sequence")
    assert action_advantages(batch) == [[0.5, 0.5], [-0.5, -0.5]]
    assert batch.metrics()["kl_policy_ref"] == pytest.approx(0.3)
    assert "env/all/reward/kl_penalty" not in batch.metrics()


def test_no_reference_means_no_kl_metric() -> None:
    batch = asyncio.run(build_training_batch([two_member_group()], reference=None))
    assert batch.kl_policy_ref is None and "kl_policy_ref" not in batch.metrics()
    assert action_advantages(batch) == [[0.5, 0.5], [-0.5, -0.5]]


def test_a_reference_answer_of_the_wrong_length_is_an_error() -> None:
    short = {key: value[:-1] for key, value in REFERENCE.items()}
    with pytest.raises(ValueError, match="prompt logprobs"):
        build(0.5, "sequence", TableReference(short))


def test_bad_kl_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="kl_penalty_mode"):
        build(0.5, "per_token")
    with pytest.raises(ValueError, match="reference"):
        asyncio.run(build_training_batch([two_member_group()], reference=None, kl_penalty_coef=0.1))
    with pytest.raises(ValueError, match="kl_penalty_coef"):
        build(-0.1, "sequence")


def test_sequence_kl_sums_over_every_datum_of_a_trajectory() -> None:
    ratios = [np.array([0.0, 0.5, 0.25]), np.array([0.0, 1.0]), np.array([2.0])]
    owners = [DatumOwner(0, 1), DatumOwner(0, 1), DatumOwner(1, 0)]
    kl = sequence_kl_estimates(ratios, owners, [2, 1])
    assert [k.tolist() for k in kl] == [[0.0, 1.75], [2.0]]


def test_a_training_client_reference_scores_the_batch_by_forward_as_its_sampler_would(
    service: ServiceClient,
) -> None:
    client = service.create_lora_training_client("tiny-llama", rank=0)
    sampler = client.save_weights_and_get_sampling_client()
    data_D, _ = assemble_training_data([two_member_group()], [[0.0, 0.0]])
    by_forward = asyncio.run(compute_reference_logprobs(client, data_D))
    by_sampler = asyncio.run(compute_reference_logprobs(sampler, data_D))
    assert [len(lp) for lp in by_forward] == [len(PROMPT) + 1] * 2
    for forward_T, sampler_T in zip(by_forward, by_sampler, strict=True):
        np.testing.assert_allclose(forward_T, sampler_T, atol=1e-4)
