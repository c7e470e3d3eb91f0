"""Smoke test of the pipeline with `rm.kind=scalar`: SFT -> a Bradley-Terry reward model -> RL on its scores."""

from __future__ import annotations

import json
from pathlib import Path

from cookbook.client.local_server import LocalServer
from cookbook.recipes.preference.rlhf import rlhf_pipeline as pipeline
from cookbook.utils.checkpoints import load_checkpoints_file
from cookbook.utils.jsonl import read_jsonl
from tests.recipes.recipe_runner import recipe_env, run_recipe

MODULE = "cookbook.recipes.preference.rlhf.rlhf_pipeline"
RM_KEYS = ("train/bt_loss", "train/accuracy", "test/accuracy", "test/accuracy/correctness", "test/margin")
RL_KEYS = ("test/win_rate", "test/gold_win_rate", "test/reward_model_score", "test/greedy_reward_model_score")
RL_TRAIN_KEYS = (
    "env/all/reward/total",
    "env/all/reward_model_score",
    "env/all/judge_agreement",
    "kl_policy_ref",
)


def test_scalar_pipeline_trains_a_reward_head_and_rl_reads_its_scores(
    server: LocalServer, tmp_path: Path
) -> None:
    log_path = tmp_path / "rlhf"
    args = [
        f"log_path={log_path}",
        f"base_url={server.url}",
        "rm.kind=scalar",
        "rl.kl_penalty_mode=sequence",
        "rl.advantage_mode=batch",
        "max_steps=2",
        "comparison_test_size=60",
        "rl.eval_comparisons=4",
        "rl.batch_size=2",
        "rl.max_tokens=12",
        "rm.eval_every=1",
        "rl.eval_every=1",
        "save_every=1",
    ]
    run_recipe(MODULE, args, recipe_env())

    rm_rows = read_jsonl(log_path / "rm" / "metrics.jsonl")
    for key in RM_KEYS:
        assert any(key in r for r in rm_rows), key
    assert [r["step"] for r in rm_rows if "test/accuracy" in r] == [0, 1, 2]
    rl_rows = read_jsonl(log_path / "rl" / "metrics.jsonl")
    for key in (*RL_KEYS, *RL_TRAIN_KEYS):
        assert any(key in r for r in rl_rows), key

    finals = {stage: load_checkpoints_file(log_path / stage)[-1] for stage in ("sft", "rm", "rl")}
    rl_config = json.loads((log_path / "rl" / "config.json").read_text())
    builder = rl_config["dataset_builder"]["reward_model_builder"]
    assert builder["rm_weights_path"] == finals["rm"].state_path
    assert rl_config["advantage_mode"] == "batch" and rl_config["kl_penalty_mode"] == "sequence"
    summary = json.loads((log_path / pipeline.SUMMARY_FILE).read_text())
    assert summary["stages"]["rm"]["headline"]["test/accuracy"]["points"] == 3
