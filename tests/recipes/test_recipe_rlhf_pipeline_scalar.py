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


def test_the_kind_is_pairwise_by_default_and_scalar_swaps_only_the_preference_stage() -> None:
    import chz
    import pytest

    from cookbook.preference.preference_model import PreferenceModelBuilderFromChatRenderer
    from cookbook.preference.reward_model import RewardModelBuilder
    from cookbook.rl.preference_envs import PairwisePreferenceRLDatasetBuilder
    from cookbook.rl.reward_model_envs import RewardModelRLDatasetBuilder
    from cookbook.utils.checkpoints import CheckpointRecord

    sft = CheckpointRecord(
        name="final",
        final=True,
        state_path="tinker://sft/weights/final",
        sampler_path="tinker://sft/sampler_weights/final",
    )
    pairwise = pipeline.PipelineConfig()
    assert pairwise.rm.kind == "pairwise" and pairwise.rl.advantage_mode == "group"
    rl = pipeline.rl_config(pairwise, sft, "tinker://rm/sampler_weights/final")
    assert isinstance(rl.dataset_builder, PairwisePreferenceRLDatasetBuilder)
    assert isinstance(rl.dataset_builder.preference_model_builder, PreferenceModelBuilderFromChatRenderer)
    assert rl.kl_penalty_coef == pipeline.KL_PENALTY_COEF["pairwise"] == 0.1

    scalar = chz.entrypoint(pipeline.PipelineConfig, argv=["rm.kind=scalar", "rm.centering_coef=0.01"])
    rm = pipeline.reward_model_config(scalar, "tinker://sft/weights/final")
    assert rm.load_checkpoint_path == "tinker://sft/weights/final" and rm.centering_coef == 0.01
    assert rm.dataset_builder.inner.common_config.batch_size == scalar.rm.batch_size // 2  # pairs
    assert rm.max_steps == scalar.rm.steps and rm.optimizer == scalar.rm.optimizer
    rl = pipeline.rl_config(scalar, sft, "tinker://rm/weights/final")
    assert isinstance(rl.dataset_builder, RewardModelRLDatasetBuilder)
    judge = rl.dataset_builder.reward_model_builder
    assert isinstance(judge, RewardModelBuilder) and judge.rm_weights_path == "tinker://rm/weights/final"
    assert all(e.preference_model_builder == judge and e.gold for e in rl.evaluator_builders)
    assert rl.kl_penalty_coef == pipeline.KL_PENALTY_COEF["scalar"] == 0.2  # an unbounded score needs more
    chosen = chz.entrypoint(pipeline.PipelineConfig, argv=["rm.kind=scalar", "rl.kl_penalty_coef=0.05"])
    assert pipeline.rl_config(chosen, sft, "tinker://rm/weights/final").kl_penalty_coef == 0.05
    assert pipeline.RM_PATH_KEY == {"pairwise": "sampler_path", "scalar": "state_path"}
    with pytest.raises(ValueError, match=r"rm\.kind must be one of"):
        pipeline.PipelineConfig(rm=pipeline.RMStage(kind="both"))  # type: ignore[arg-type]
