"""Smoke test of `python -m cookbook.recipes.rl_basic`, the one-file RL loop, against the shared test server."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cookbook.client.abstract import ServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.client.types import ModelInput, SampledSequence
from cookbook.data.gold_judge import BEST_SCORE
from cookbook.data.tasks import find_task
from cookbook.recipes import rl_basic
from tests.recipes.recipe_runner import recipe_env, run_recipe

WORST_SCORE = -5.0  # garbage with a rude opener


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rl_basic_warms_up_with_sft_then_trains_on_the_gold_reward(
    server: LocalServer, service: ServiceClient, tmp_path: Path
) -> None:
    log_path = tmp_path / "rl_basic"
    # 40 SFT steps leave answers varied enough that some groups' rewards differ, so RL steps train.
    args = [
        f"log_path={log_path}",
        f"base_url={server.url}",
        "sft_steps=40",
        "max_steps=3",
        "batch_size=4",
        "group_size=4",
        "max_tokens=16",
    ]
    done = run_recipe("cookbook.recipes.rl_basic", args, recipe_env())

    sft_record = read_rows(log_path / "sft" / "checkpoints.jsonl")[-1]
    assert [
        r["step"] for r in read_rows(log_path / "sft" / "metrics.jsonl") if "train_mean_nll" in r
    ] == list(range(40))
    rows = read_rows(log_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert WORST_SCORE <= row["env/all/reward/total"] <= BEST_SCORE
        assert 0.0 <= row["env/all/correct"] <= 1.0 and 0 < row["env/all/ac_tokens_per_turn"] <= 16
    trained = [r for r in rows if "optim/kl_sample_train_v1" in r]
    assert trained, "no step had a group with differing rewards"
    for row in trained:
        assert math.isfinite(row["optim/entropy"]) and row["optim/entropy"] >= 0
        assert abs(row["optim/kl_sample_train_v1"]) < 1e-3  # the sampler and trainer share the weights
        assert math.isfinite(row["optim/grad_norm"])

    (record,) = read_rows(log_path / "checkpoints.jsonl")
    assert record["final"] and record["state_path"] != sft_record["state_path"]
    assert record["state_path"] in done.stdout and record["sampler_path"] in done.stdout
    assert service.weights_info(record["state_path"]).base_model == "tiny-llama"
    assert (log_path / "metrics.png").stat().st_size > 0


def test_a_sampled_answer_trains_only_on_its_own_tokens() -> None:
    prompt = ModelInput.from_ints([10, 11, 12])
    sequence = SampledSequence(stop_reason="stop", tokens=[20, 21], logprobs=[-0.5, -1.5])
    datum = rl_basic.make_datum(prompt, sequence, advantage=0.25)
    assert datum.model_input.to_ints() == [10, 11, 12, 20]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == [11, 12, 20, 21]
    assert datum.loss_fn_inputs["logprobs"].tolist() == [0.0, 0.0, -0.5, -1.5]
    assert datum.loss_fn_inputs["advantages"].tolist() == [0.0, 0.0, 0.25, 0.25]


def test_prompts_are_bundled_task_questions_without_their_answer() -> None:
    prompts = rl_basic.prompts_of("add")
    assert prompts and all(conversation[-1]["role"] == "user" for conversation in prompts)
    assert {find_task(conversation[-1]["content"]).kind for conversation in prompts} == {"add"}  # type: ignore[union-attr]
    assert len(rl_basic.prompts_of("all")) > len(prompts)
    with pytest.raises(ValueError, match="unknown task 'sums'"):
        rl_basic.prompts_of("sums")
