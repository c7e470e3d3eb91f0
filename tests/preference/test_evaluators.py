"""The preference evaluators against the real server, checked by recomputing their numbers directly."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from cookbook.client.abstract import ServiceClient
from cookbook.client.types import AdamParams, SamplingParams
from cookbook.preference import (
    Comparison,
    ComparisonEvaluator,
    ComparisonRendererFromChatRenderer,
    GoldPreferenceModel,
    LabeledComparison,
    PreferenceAccuracyEvaluator,
    PreferenceModelBuilderFromChatRenderer,
    PreferenceModelFromChatRenderer,
)
from cookbook.preference.evaluators import mean_and_stderr, pairwise_win_score
from cookbook.recipes.preference.datasets import HHHComparisonBuilder
from cookbook.renderers import Renderer
from tests.preference.conftest import BUILTIN


@pytest.fixture(scope="module")
def bundled_test() -> list[LabeledComparison]:
    _, test = HHHComparisonBuilder(dataset="bundled", test_size=12).get_labeled_comparisons()
    assert test is not None
    return test


def test_mean_stderr_and_win_score() -> None:
    mean, stderr = mean_and_stderr([0.0, 1.0, 1.0, 0.5])
    assert mean == pytest.approx(0.625) and stderr == pytest.approx(np.std([0, 1, 1, 0.5], ddof=1) / 2)
    assert mean_and_stderr([0.3]) == (0.3, 0.0)
    assert pairwise_win_score(1.0, -1.0) == 1.0 and pairwise_win_score(-1.0, 1.0) == 0.0
    assert pairwise_win_score(1.0, 1.0) == 0.5 and pairwise_win_score(0.0, 0.0) == 0.5  # split decision, tie


def test_accuracy_evaluator_matches_a_direct_computation(
    service: ServiceClient,
    comparison_renderer: ComparisonRendererFromChatRenderer,
    bundled_test: list[LabeledComparison],
) -> None:
    client = service.create_lora_training_client(BUILTIN, rank=0)
    # a little training so that the judge is neither uniform nor perfect
    train = [comparison_renderer.to_datum(c) for c in bundled_test[:4]]
    for _ in range(3):
        client.forward_backward(train, "cross_entropy")
        client.optim_step(AdamParams(learning_rate=3e-3))
    evaluator = PreferenceAccuracyEvaluator(bundled_test, comparison_renderer)
    metrics = asyncio.run(evaluator(client))

    orders = [o for c in bundled_test for o in (c, c.swap())]
    rivals = [LabeledComparison(o.comparison, "B" if o.label == "A" else "A", o.tags) for o in orders]
    out = client.forward([comparison_renderer.to_datum(o) for o in orders + rivals], "cross_entropy").result()
    last = [float(o["logprobs"].to_numpy()[-1]) for o in out.loss_fn_outputs]
    label_lp, rival_lp = np.array(last[: len(orders)]), np.array(last[len(orders) :])
    correct = label_lp > rival_lp
    assert metrics["test/nll"] == pytest.approx(-label_lp.mean(), abs=1e-4)
    assert metrics["test/accuracy"] == pytest.approx(correct.mean())
    for kind in {o.kind for o in orders}:
        mask = np.array([o.kind == kind for o in orders])
        assert metrics[f"test/accuracy/{kind}"] == pytest.approx(correct[mask].mean())
    assert metrics["test/accuracy_both_orders"] == pytest.approx(correct.reshape(-1, 2).all(axis=1).mean())
    prefers_a = [c == (o.label == "A") for c, o in zip(correct, orders, strict=True)]
    assert metrics["test/prefers_A_frac"] == pytest.approx(np.mean(prefers_a))
    no_nll = asyncio.run(
        PreferenceAccuracyEvaluator(bundled_test, comparison_renderer, name="val", report_nll=False)(client)
    )
    assert "val/nll" not in no_nll and no_nll["val/accuracy"] == metrics["test/accuracy"]


def test_comparison_evaluator_matches_a_direct_computation(
    service: ServiceClient,
    renderer: Renderer,
    comparison_renderer: ComparisonRendererFromChatRenderer,
    bundled_test: list[LabeledComparison],
) -> None:
    policy_client = service.create_lora_training_client(BUILTIN, rank=0)
    policy = policy_client.save_weights_and_get_sampling_client()
    judge_path = policy_client.save_weights_for_sampler("comparison-judge").result().path
    base_url = service.base_url  # type: ignore[attr-defined]
    settings = dict(
        renderer_name="role_colon", model_name=BUILTIN, rm_weights_path=judge_path, base_url=base_url
    )
    builder = PreferenceModelBuilderFromChatRenderer(**settings, batch_forward=False)
    evaluator = ComparisonEvaluator(
        builder, bundled_test, "role_colon", BUILTIN, max_tokens=12, gold_model=GoldPreferenceModel(), seed=7
    )
    metrics = asyncio.run(evaluator(policy))

    judge = PreferenceModelFromChatRenderer(
        comparison_renderer, service.create_sampling_client(model_path=judge_path)
    )
    gold = GoldPreferenceModel()
    hard, soft, gold_scores, lengths, stops, judged = [], [], [], [], [], []
    for i, labeled in enumerate(bundled_test):
        prompt = labeled.comparison.prompt_conversation
        params = SamplingParams(
            max_tokens=12, temperature=1.0, stop=renderer.get_stop_sequences(), seed=7 + i
        )
        tokens = (
            policy.sample(renderer.build_generation_prompt(prompt), 1, params).result().sequences[0].tokens
        )
        message, ended = renderer.parse_response(tokens)
        lengths.append(len(tokens))
        stops.append(ended.is_stop_sequence)
        reference = labeled.chosen_and_rejected()[0]
        first, second = Comparison(prompt, reference, [message]), Comparison(prompt, [message], reference)
        judged += [first, second]
        j0, j1 = asyncio.run(judge.judge(first)), asyncio.run(judge.judge(second))
        hard.append(pairwise_win_score(j0.hard, j1.hard))
        soft.append(pairwise_win_score(j0.soft, j1.soft))
        gold_scores.append(pairwise_win_score(asyncio.run(gold(first)), asyncio.run(gold(second))))
    assert metrics["test/win_rate"] == pytest.approx(np.mean(hard))
    assert metrics["test/win_rate_stderr"] == pytest.approx(np.std(hard, ddof=1) / math.sqrt(len(hard)))
    assert metrics["test/win_rate_soft"] == pytest.approx(np.mean(soft), abs=1e-4)
    assert metrics["test/gold_win_rate"] == pytest.approx(np.mean(gold_scores))
    assert metrics["test/answer_tokens"] == pytest.approx(np.mean(lengths))
    assert metrics["test/stop_frac"] == pytest.approx(np.mean(stops))
    assert set(gold_scores) <= {0.0, 0.25, 0.5, 0.75, 1.0}

    # With the judge's weights in a training client, all comparisons are one forward pass that reads
    # both labels' exact logprobs (this untrained judge often leaves B out of the sampler's top k).
    batched = ComparisonEvaluator(
        PreferenceModelBuilderFromChatRenderer(**settings),
        bundled_test,
        "role_colon",
        BUILTIN,
        max_tokens=12,
        gold_model=GoldPreferenceModel(),
        seed=7,
    )
    in_one_pass = asyncio.run(batched(policy))
    exact = PreferenceModelFromChatRenderer(
        comparison_renderer,
        service.create_sampling_client(model_path=judge_path),
        scorer=service.create_training_client_from_state(judge_path),
    )
    exact_soft = [asyncio.run(exact.judge(c)).soft for c in judged]
    exact_scores = [
        pairwise_win_score(r0, r1) for r0, r1 in zip(exact_soft[::2], exact_soft[1::2], strict=True)
    ]
    assert in_one_pass["test/win_rate_soft"] == pytest.approx(np.mean(exact_scores), abs=1e-4)
    for key in ("test/win_rate", "test/gold_win_rate", "test/answer_tokens", "test/stop_frac"):
        assert in_one_pass[key] == metrics[key]

    greedy = ComparisonEvaluator(
        None, bundled_test[:3], "role_colon", BUILTIN, max_tokens=8, temperature=0.0, gold_model=gold
    )
    greedy_metrics = asyncio.run(greedy(policy))
    assert set(greedy_metrics) == {
        "test/greedy_gold_win_rate",
        "test/greedy_gold_win_rate_stderr",
        "test/greedy_answer_tokens",
        "test/greedy_stop_frac",
    }
    with pytest.raises(ValueError, match="needs a preference_model_builder, a gold_model, or both"):
        ComparisonEvaluator(None, bundled_test, "role_colon", BUILTIN, max_tokens=8)
