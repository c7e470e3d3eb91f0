"""Smoke test of `python -m cookbook.recipes.preference.dpo.train`: SFT stage, then DPO, then a no-op rerun."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import chz
import pytest

from cookbook.client.local_server import LocalServer
from cookbook.recipes import sl_basic
from cookbook.recipes.preference.dpo import train as dpo_recipe
from cookbook.recipes.renamed_keys import RenamedKeyError, check_renamed_keys
from cookbook.utils.checkpoints import load_checkpoints_file
from cookbook.utils.jsonl import read_jsonl
from tests.recipes.recipe_runner import recipe_env, run_recipe

MODULE = "cookbook.recipes.preference.dpo.train"


def test_dpo_recipe_runs_sft_then_dpo_and_a_rerun_is_a_no_op(server: LocalServer, tmp_path: Path) -> None:
    log_path = tmp_path / "dpo-recipe"
    args = [
        f"log_path={log_path}",
        f"base_url={server.url}",
        "sft.steps=2",
        "max_steps=2",
        "batch_size=4",
        "test_size=8",
        "eval_comparisons=4",
        "eval_max_tokens=8",
        "eval_every=1",
        "save_every=1",
    ]
    env = recipe_env()
    run_recipe(MODULE, args, env)

    sft_records = load_checkpoints_file(log_path / "sft")
    assert sft_records[-1].final and sft_records[-1].state_path
    rows = read_jsonl(log_path / "dpo" / "metrics.jsonl")
    train_rows = [r for r in rows if "dpo_loss" in r]
    assert [r["step"] for r in train_rows] == [0, 1]
    for key in ("accuracy", "margin", "chosen_reward", "rejected_reward", "learning_rate"):
        assert key in train_rows[0]
    evals = [r for r in rows if "test/gold_win_rate" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
    for key in (
        "test/nll",
        "test/accuracy",
        "test/dpo_loss",
        "test/greedy_gold_win_rate",
        "test/answer_tokens",
    ):
        assert key in evals[-1]
    assert 0.0 <= evals[-1]["test/gold_win_rate"] <= 1.0
    dpo_records = load_checkpoints_file(log_path / "dpo")
    assert [r.name for r in dpo_records] == ["000001", "final"] and dpo_records[-1].sampler_path
    assert (log_path / "dpo" / "metrics.png").stat().st_size > 0

    again = run_recipe(MODULE, args, env)
    assert again.stdout.count("already finished") == 2  # both stages
    assert read_jsonl(log_path / "dpo" / "metrics.jsonl") == rows


def test_defaults_start_dpo_from_the_sft_stage_on_the_builtin_model() -> None:
    cli = dpo_recipe.CLIConfig()
    sft = dpo_recipe.sft_config(cli)
    assert sft.log_path == f"{dpo_recipe.DEFAULT_LOG_PATH}/sft" and sft.lora_rank == 0
    dpo = dpo_recipe.dpo_config(cli, start_path="tinker://run-x/weights/final")
    assert dpo.log_path == f"{dpo_recipe.DEFAULT_LOG_PATH}/dpo" and dpo.load_checkpoint_path.endswith(
        "/final"
    )
    assert dpo.model_name == "tiny-llama" and dpo.lora_rank == 0 and dpo.renderer_name == "role_colon"
    assert len(dpo.evaluator_builders) == 2  # gold win rate, sampled and greedy
    real = dpo_recipe.dpo_config(dpo_recipe.CLIConfig(dataset="Anthropic/hh-rlhf"), start_path=None)
    assert real.evaluator_builders == []  # the gold rule only knows the bundled tasks


def test_the_sft_stage_keys_are_nested() -> None:
    argv = ["sft.steps=7", "sft.dataset=chats.jsonl", "sft.batch_size=4", "sft.optimizer.learning_rate=5e-4"]
    cli = chz.entrypoint(dpo_recipe.CLIConfig, argv=argv)
    assert (cli.sft.steps, cli.sft.dataset) == (7, "chats.jsonl") and cli.optimizer.learning_rate == 3e-4
    sft = dpo_recipe.sft_config(cli)
    assert sft.max_steps == 7 and sft.dataset_builder.dataset == "chats.jsonl"  # type: ignore[attr-defined]
    assert sft.dataset_builder.common_config.batch_size == 4  # type: ignore[attr-defined]
    assert (
        sft.optimizer.learning_rate == 5e-4 and sft.optimizer.lr_schedule == "cosine"
    )  # sl_basic's schedule
    builtin = dpo_recipe.sft_config(dpo_recipe.CLIConfig())
    plain_sl_basic = sl_basic.build_config(sl_basic.CLIConfig(log_path=builtin.log_path))
    assert (builtin.optimizer, builtin.num_epochs, builtin.eval_every) == (
        plain_sl_basic.optimizer,
        plain_sl_basic.num_epochs,
        plain_sl_basic.eval_every,
    )  # on the built-in model the stage is sl_basic as it stands
    for old, new in (
        ("sft_steps", "sft.steps"),
        ("sft_dataset", "sft.dataset"),
        ("learning_rate", "optimizer.learning_rate"),
    ):
        with pytest.raises(RenamedKeyError, match=rf"{old}=\.\.\. is now {re.escape(new)}=\.\.\."):
            check_renamed_keys([f"{old}=1"], dpo_recipe.RENAMED_KEYS)


@pytest.mark.parametrize(("model_name", "warned"), [("tiny-llama", True), ("smollm2", False)])
def test_without_sft_dpo_starts_from_the_base_and_warns_only_for_a_random_init_one(
    caplog: pytest.LogCaptureFixture, model_name: str, warned: bool
) -> None:
    cli = chz.entrypoint(dpo_recipe.CLIConfig, argv=[f"model_name={model_name}", "sft.steps=0"])
    with caplog.at_level(logging.WARNING):
        assert dpo_recipe.start_path_of(cli) is None
    assert ("reference knows nothing" in caplog.text) is warned
