"""Soft and hard preference scores: the formula on known distributions, then a trained judge on
the real server (its scores must follow what it was trained on and match its forward pass)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator

import pytest

from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.client.local_server import LocalServer
from cookbook.client.types import AdamParams, SampledSequence, SampleResponse, SamplingParams
from cookbook.preference import (
    Comparison,
    ComparisonRendererFromChatRenderer,
    LabeledComparison,
    PreferenceModelBuilderFromChatRenderer,
    PreferenceModelFromChatRenderer,
    soft_score,
)
from cookbook.preference.preference_model import greedy_label, label_distribution
from tests.preference.conftest import BUILTIN

A, B, OTHER = 11, 12, 13


def _response(prompt_logprobs: list[float | None], last_topk: list[tuple[int, float]]) -> SampleResponse:
    return SampleResponse(
        sequences=[SampledSequence(stop_reason="length", tokens=[0], logprobs=[0.0])],
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=[None] * (len(prompt_logprobs) - 1) + [last_topk],
    )


def test_soft_score_is_the_normalised_label_probability_difference() -> None:
    assert soft_score(math.log(0.2), math.log(0.6)) == pytest.approx((0.6 - 0.2) / (0.6 + 0.2))
    assert soft_score(math.log(0.3), math.log(0.3)) == 0.0
    assert soft_score(0.0, -800.0) == -1.0 and soft_score(-800.0, 0.0) == 1.0  # no overflow
    assert soft_score(-1.0, -2.0) == pytest.approx(-soft_score(-2.0, -1.0))


def test_label_distribution_reads_the_last_position() -> None:
    known = _response(
        [None, -3.0, math.log(0.2)], [(B, math.log(0.6)), (A, math.log(0.2)), (OTHER, math.log(0.1))]
    )
    dist = label_distribution(known, A, B)
    assert dist.logprob_a == pytest.approx(math.log(0.2)) and dist.logprob_b == pytest.approx(math.log(0.6))
    assert not dist.b_is_bound and dist.greedy_token == B
    # B outside the top-k: bounded by the k-th (smallest listed) logprob
    missing_b = _response(
        [None, math.log(0.2)], [(OTHER, math.log(0.5)), (A, math.log(0.2)), (7, math.log(0.05))]
    )
    dist = label_distribution(missing_b, A, B)
    assert dist.b_is_bound and dist.logprob_b == pytest.approx(math.log(0.05)) and dist.greedy_token == OTHER
    with pytest.raises(ValueError, match="top-k"):
        label_distribution(SampleResponse(sequences=[], prompt_logprobs=[None, -1.0]), A, B)


def test_the_label_logprobs_settle_the_greedy_label_only_when_they_outweigh_every_other_token() -> None:
    assert greedy_label(math.log(0.6), math.log(0.3), A, B) == A
    assert greedy_label(math.log(0.1), math.log(0.5), A, B) == B  # 0.5 > the other 0.4
    assert greedy_label(math.log(0.3), math.log(0.35), A, B) is None  # 0.35 here, up to 0.35 elsewhere
    assert greedy_label(math.log(0.4), math.log(0.4), A, B) is None  # a tie: the sampler decides


# ---------------------------------------------------------------------------------------------
# Against the server
# ---------------------------------------------------------------------------------------------

PROMPT = [{"role": "user", "content": "What is 2 plus 3?"}]
RIGHT = [{"role": "assistant", "content": "Sure! 2 plus 3 is 5."}]
WRONG = [{"role": "assistant", "content": "Ugh, fine. 2 plus 3 is 7."}]
B_BETTER = Comparison(PROMPT, WRONG, RIGHT)  # label "B"
OTHERS = [
    Comparison(
        [{"role": "user", "content": f"What is {i} plus 1?"}],
        [{"role": "assistant", "content": f"{i} plus 1 is {i + 1}."}],
        [{"role": "assistant", "content": f"{i} plus 1 is {i + 3}."}],
    )
    for i in range(8)
]


@pytest.fixture(scope="module")
def trained(
    service: ServiceClient,
    comparison_renderer: ComparisonRendererFromChatRenderer,
) -> Iterator[tuple[TrainingClient, SamplingClient]]:
    """A full-weight judge trained on B_BETTER in both orders until it is sure."""
    client = service.create_lora_training_client(BUILTIN, rank=0)
    labeled = LabeledComparison(B_BETTER, "B")
    data = [comparison_renderer.to_datum(labeled), comparison_renderer.to_datum(labeled.swap())]
    losses = []
    for _ in range(25):
        losses.append(client.forward_backward(data, "cross_entropy").result().metrics["loss:sum"])
        client.optim_step(AdamParams(learning_rate=1e-2)).result()
    assert losses[-1] < 0.2 < losses[0]
    yield client, client.save_weights_and_get_sampling_client()


def test_trained_judge_scores_the_better_completion(
    trained: tuple[TrainingClient, SamplingClient], comparison_renderer: ComparisonRendererFromChatRenderer
) -> None:
    soft = PreferenceModelFromChatRenderer(comparison_renderer, trained[1], scoring="soft")
    hard = PreferenceModelFromChatRenderer(comparison_renderer, trained[1], scoring="hard")

    async def scores() -> list[float]:
        return list(
            await asyncio.gather(soft(B_BETTER), soft(B_BETTER.swap()), hard(B_BETTER), hard(B_BETTER.swap()))
        )

    b_first_soft, a_first_soft, b_first_hard, a_first_hard = asyncio.run(scores())
    assert b_first_soft > 0.8 and a_first_soft < -0.8
    assert (b_first_hard, a_first_hard) == (1.0, -1.0)


def test_soft_score_matches_the_judges_forward_pass(
    trained: tuple[TrainingClient, SamplingClient], comparison_renderer: ComparisonRendererFromChatRenderer
) -> None:
    client, sampler = trained
    judge = PreferenceModelFromChatRenderer(comparison_renderer, sampler)
    for comparison in (B_BETTER, OTHERS[0], OTHERS[1].swap()):
        data = [comparison_renderer.to_datum(LabeledComparison(comparison, label)) for label in ("A", "B")]
        out = client.forward(data, "cross_entropy").result()
        logprob_a, logprob_b = (float(o["logprobs"].to_numpy()[-1]) for o in out.loss_fn_outputs)
        dist = asyncio.run(judge.label_distribution(comparison))
        assert dist.logprob_a == pytest.approx(logprob_a, abs=1e-4)
        assert dist.logprob_b == pytest.approx(logprob_b, abs=1e-4) and not dist.b_is_bound
        assert asyncio.run(judge(comparison)) == pytest.approx(soft_score(logprob_a, logprob_b), abs=1e-4)


def test_hard_label_is_what_a_greedy_one_token_sample_writes(
    trained: tuple[TrainingClient, SamplingClient],
    comparison_renderer: ComparisonRendererFromChatRenderer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, sampler = trained
    judge = PreferenceModelFromChatRenderer(comparison_renderer, sampler, scoring="hard")
    for comparison in (B_BETTER, B_BETTER.swap(), *OTHERS[:4]):
        greedy = (
            sampler.sample(
                comparison_renderer.build_generation_prompt(comparison),
                1,
                SamplingParams(max_tokens=1, temperature=0.0),
            )
            .result()
            .sequences[0]
            .tokens[0]
        )
        assert asyncio.run(judge.label_distribution(comparison)).greedy_token == greedy
        expected = {judge.a_token: -1.0, judge.b_token: 1.0}.get(greedy, 0.0)
        assert asyncio.run(judge(comparison)) == expected
    # a token that is no label scores as a tie, with one warning however often it happens
    with caplog.at_level(logging.WARNING):
        assert [judge._hard_label(judge.a_token + judge.b_token) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert judge.unlabelled_judgements >= 3
    assert sum("not a label" in r.getMessage() for r in caplog.records) <= 1


def test_builder_from_saved_weights_and_concurrent_judgements(
    trained: tuple[TrainingClient, SamplingClient],
    comparison_renderer: ComparisonRendererFromChatRenderer,
    server: LocalServer,
) -> None:
    client, sampler = trained
    path = client.save_weights_for_sampler("judge").result().path
    builder = PreferenceModelBuilderFromChatRenderer(
        renderer_name="role_colon", model_name=BUILTIN, rm_weights_path=path, base_url=server.url
    )
    built = builder()
    direct = PreferenceModelFromChatRenderer(comparison_renderer, sampler)
    comparisons = [B_BETTER, *OTHERS, *(c.swap() for c in OTHERS)]

    async def together() -> list[float]:
        return list(await asyncio.gather(*(built(c) for c in comparisons)))

    one_by_one = [asyncio.run(direct(c)) for c in comparisons]
    assert asyncio.run(together()) == pytest.approx(one_by_one, abs=1e-4)
    with pytest.raises(ValueError, match="tinker://"):
        PreferenceModelBuilderFromChatRenderer(
            renderer_name="role_colon", model_name=BUILTIN, rm_weights_path="x"
        )


class CountingForwards:
    """Passes a training client's forward calls through, counting them."""

    def __init__(self, inner: TrainingClient):
        self.inner = inner
        self.forwards = 0

    async def forward_async(self, data, loss_fn):  # type: ignore[no-untyped-def]
        self.forwards += 1
        return await self.inner.forward_async(data, loss_fn)


def test_a_scorer_judges_a_list_in_one_forward_pass_as_the_sampler_judges_each(
    trained: tuple[TrainingClient, SamplingClient], comparison_renderer: ComparisonRendererFromChatRenderer
) -> None:
    client, sampler = trained
    by_sampler = PreferenceModelFromChatRenderer(comparison_renderer, sampler)
    scorer = CountingForwards(client)
    by_forward = PreferenceModelFromChatRenderer(comparison_renderer, sampler, scorer=scorer)  # type: ignore[arg-type]
    comparisons = [B_BETTER, B_BETTER.swap(), *OTHERS, *(c.swap() for c in OTHERS)]

    one_pass = asyncio.run(by_forward.judge_many(comparisons))
    assert scorer.forwards == 1
    each = [asyncio.run(by_sampler.judge(c)) for c in comparisons]
    assert [j.soft for j in one_pass] == pytest.approx([j.soft for j in each], abs=1e-4)
    assert [j.hard for j in one_pass] == [j.hard for j in each]
    assert asyncio.run(by_forward.preferences(comparisons)) == [j.soft for j in one_pass]
    assert asyncio.run(by_forward.judge_many([])) == [] and scorer.forwards == 2
