"""The scalar reward model on the cookbook side: Bradley-Terry pairs from comparisons, a reward head
trained on the real server, scores read back (gathered into one call), its accuracy per kind, and a
model rebuilt from its saved state scoring the same."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from cookbook.client.abstract import ServiceClient, TrainingClient
from cookbook.client.types import AdamParams
from cookbook.preference.comparison_datasets import ComparisonBuilderFromJsonl
from cookbook.preference.reward_datasets import RewardDatasetBuilderFromComparisons, reward_pair
from cookbook.preference.reward_evaluator import RewardAccuracyEvaluator
from cookbook.preference.reward_model import RewardModel, RewardModelBuilder, reward_model_input
from cookbook.preference.types import Comparison, LabeledComparison
from cookbook.renderers import Renderer, TrainOnWhat
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig
from tests.preference.conftest import BUILTIN

PROMPT = [{"role": "user", "content": "What is 2 plus 3?"}]
RIGHT = [{"role": "assistant", "content": "Sure! 2 plus 3 is 5."}]
WRONG = [{"role": "assistant", "content": "Ugh, fine. 2 plus 3 is 7."}]
PAIRS = [
    LabeledComparison(Comparison(PROMPT, WRONG, RIGHT), "B", {"kind": "correctness"}),
    LabeledComparison(
        Comparison(
            [{"role": "user", "content": "Name a colour."}],
            [{"role": "assistant", "content": "Red."}],
            [{"role": "assistant", "content": "Whatever."}],
        ),
        "A",
        {"kind": "rudeness"},
    ),
]


def test_each_comparison_is_one_pair_chosen_then_rejected(renderer: Renderer, tmp_path: Any) -> None:
    rows = [c.to_dict() for c in PAIRS] + [{**PAIRS[0].to_dict(), "label": "Tie"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    builder = RewardDatasetBuilderFromComparisons(
        common_config=ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer=BUILTIN, renderer_name="role_colon", batch_size=2, max_length=None
        ),
        comparison_builder=ComparisonBuilderFromJsonl(train_path=str(tmp_path / "train.jsonl")),
    )
    train, test = builder()
    assert test is None and len(train) == 1  # the tie is left out
    batch = train.get_batch(0)
    assert len(batch) == 4 and all(d.loss_fn_inputs == {} for d in batch)
    expected = {
        tuple(reward_model_input(c.comparison.prompt_conversation, side, renderer).to_ints())
        for c in PAIRS
        for side in [c.chosen_and_rejected()[0]]
    }
    assert {tuple(batch[i].model_input.to_ints()) for i in (0, 2)} == expected  # chosen sides first
    full, _ = renderer.build_supervised_example([*PROMPT, *RIGHT], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    assert reward_pair(PAIRS[0], renderer, None)[0].model_input.to_ints() == full.to_ints()
    with pytest.raises(ValueError, match="max_length"):
        reward_pair(PAIRS[0], renderer, 3)


def test_accuracy_and_margins_per_kind(renderer: Renderer) -> None:
    evaluator = RewardAccuracyEvaluator(PAIRS, renderer)
    metrics = evaluator.metrics([2.0, -1.0, 0.0, 0.5])  # correctness right by 3, rudeness wrong by 0.5
    assert metrics["test/accuracy"] == 0.5 and metrics["test/margin"] == pytest.approx(1.25)
    assert metrics["test/accuracy/correctness"] == 1.0 and metrics["test/accuracy/rudeness"] == 0.0
    assert metrics["test/margin/rudeness"] == pytest.approx(-0.5)
    expected_loss = (math.log1p(math.exp(-3.0)) + math.log1p(math.exp(0.5))) / 2
    assert metrics["test/bt_loss"] == pytest.approx(expected_loss)


class CountingClient:
    """A training client wrapper that counts forward calls."""

    def __init__(self, client: TrainingClient):
        self.client = client
        self.forwards = 0

    async def forward_async(self, *args: Any, **kwargs: Any) -> Any:
        self.forwards += 1
        return await self.client.forward_async(*args, **kwargs)


@pytest.fixture(scope="module")
def trained(service: ServiceClient, renderer: Renderer) -> Iterator[TrainingClient]:
    client = service.create_lora_training_client(BUILTIN, rank=8, reward_head=True)
    data = [d for c in PAIRS for d in reward_pair(c, renderer, None)]
    losses = []
    for _ in range(12):
        losses.append(client.forward_backward(data, "bradley_terry").result().metrics["loss:sum"])
        client.optim_step(AdamParams(learning_rate=1e-2)).result()
    assert losses[-1] < losses[0]
    yield client


def test_a_trained_reward_model_scores_chosen_above_rejected(
    trained: TrainingClient, renderer: Renderer, service: ServiceClient
) -> None:
    counting = CountingClient(trained)
    model = RewardModel(renderer, counting)  # type: ignore[arg-type]

    async def judge() -> tuple[list[list[float]], list[float]]:
        scores = await asyncio.gather(
            *(model.score(c.comparison.prompt_conversation, list(c.chosen_and_rejected())) for c in PAIRS)
        )
        return list(scores), list(await asyncio.gather(*(model(c.comparison) for c in PAIRS)))

    scores, preferences = asyncio.run(judge())
    assert all(chosen > rejected for chosen, rejected in scores)
    assert preferences[0] > 0 > preferences[1]  # B better, then A better
    assert preferences[0] == pytest.approx(math.tanh((scores[0][0] - scores[0][1]) / 2), rel=1e-5)
    assert counting.forwards == 2  # each gather went out as one forward call

    state = trained.save_state("rm").result().path
    builder = RewardModelBuilder(renderer_name="role_colon", model_name=BUILTIN, rm_weights_path=state)
    rebuilt = builder.from_service(service)
    again = asyncio.run(rebuilt.score(PROMPT, [RIGHT, WRONG]))
    assert again == pytest.approx(scores[0], abs=1e-6)


def test_the_builder_refuses_a_head_less_state(service: ServiceClient) -> None:
    plain = service.create_lora_training_client(BUILTIN, rank=8)
    state = plain.save_state("plain").result().path
    builder = RewardModelBuilder(renderer_name="role_colon", model_name=BUILTIN, rm_weights_path=state)
    with pytest.raises(ValueError, match="no reward head"):
        builder.from_service(service)


def test_a_new_zero_head_is_at_chance_not_always_wrong(renderer: Renderer) -> None:
    metrics = RewardAccuracyEvaluator(PAIRS, renderer).metrics([0.0] * 4)
    assert metrics["test/accuracy"] == 0.5 and metrics["test/accuracy/correctness"] == 0.5
