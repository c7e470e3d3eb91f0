"""Smoke test of `python -m cookbook.recipes.preference.rlhf.rlhf_pipeline`: SFT -> PM -> RL, then a no-op rerun."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import chz
import numpy as np
import pytest

from cookbook.client.local_server import LocalServer
from cookbook.client.types import Datum, ModelInput, TensorData
from cookbook.preference.gold import GoldPreferenceModelBuilder
from cookbook.recipes.preference.rlhf import rlhf_pipeline as pipeline
from cookbook.recipes.preference.rlhf.report import COMBINED_PLOT, CurveSummary, format_summary
from cookbook.recipes.preference.rlhf.seeded_data import SeededDatasetBuilder, SeededEpochs, epoch_order_seed
from cookbook.recipes.renamed_keys import RenamedKeyError, check_renamed_keys
from cookbook.rl.tournament import TournamentPattern
from cookbook.supervised.data import SupervisedDatasetFromHFDataset
from cookbook.utils.checkpoints import CheckpointRecord, load_checkpoints_file
from cookbook.utils.jsonl import read_jsonl
from cookbook.utils.optimizer_config import OptimizerConfig
from tests.recipes.recipe_runner import recipe_env, run_recipe

MODULE = "cookbook.recipes.preference.rlhf.rlhf_pipeline"
HEADLINE = {
    "sft": ("train_mean_nll", "test/nll"),
    "rm": ("train_mean_nll", "test/nll", "test/accuracy", "test/accuracy/correctness", "test/prefers_A_frac"),
    "rl": (
        "test/win_rate",
        "test/win_rate_stderr",
        "test/win_rate_soft",
        "test/greedy_win_rate",
        "test/gold_win_rate",
        "test/gold_win_rate_stderr",
        "test/greedy_gold_win_rate",
    ),
}
RL_TRAIN_KEYS = (
    "env/all/reward/total",
    "env/all/win_fraction",
    "env/all/format",
    "kl_policy_ref",
    "optim/kl_sample_train_v1",
    "optim/entropy",
)


def test_pipeline_runs_three_stages_and_a_rerun_skips_them(server: LocalServer, tmp_path: Path) -> None:
    log_path = tmp_path / "rlhf"
    args = [
        f"log_path={log_path}",
        f"base_url={server.url}",
        "max_steps=2",
        "comparison_test_size=60",
        "rl.eval_comparisons=4",
        "rl.batch_size=2",
        "rl.max_tokens=12",
        "sft.eval_every=1",
        "rm.eval_every=1",
        "rl.eval_every=1",
        "save_every=1",
    ]
    env = recipe_env()
    first = run_recipe(MODULE, args, env)

    rows = {stage: read_jsonl(log_path / stage / "metrics.jsonl") for stage in ("sft", "rm", "rl")}
    for stage, keys in HEADLINE.items():
        evals = [r for r in rows[stage] if keys[-1] in r]
        assert [r["step"] for r in evals] == [0, 1, 2], stage  # every step and the end
        for key in keys:
            assert any(key in r for r in rows[stage]), (stage, key)
    rl_train_rows = [r for r in rows["rl"] if "env/all/reward/total" in r]
    assert [r["step"] for r in rl_train_rows] == [0, 1]
    for key in RL_TRAIN_KEYS:
        assert key in rl_train_rows[-1], key
    assert all(0.0 <= r["test/win_rate"] <= 1.0 for r in rows["rl"] if "test/win_rate" in r)

    # Stages chain through their final checkpoints: PM from SFT weights, RL from SFT, judged by the PM.
    finals = {stage: load_checkpoints_file(log_path / stage)[-1] for stage in ("sft", "rm", "rl")}
    assert all(record.final and record.state_path and record.sampler_path for record in finals.values())
    rm_config = json.loads((log_path / "rm" / "config.json").read_text())
    assert rm_config["load_checkpoint_path"] == finals["sft"].state_path
    rl_config = json.loads((log_path / "rl" / "config.json").read_text())
    assert rl_config["load_checkpoint_path"] == finals["sft"].state_path
    assert rl_config["kl_reference_path"] == finals["sft"].sampler_path
    assert (
        rl_config["dataset_builder"]["preference_model_builder"]["rm_weights_path"]
        == finals["rm"].sampler_path
    )

    assert (log_path / COMBINED_PLOT).stat().st_size > 0
    for stage in ("sft", "rm", "rl"):
        assert (log_path / stage / "metrics.png").stat().st_size > 0
    summary = json.loads((log_path / pipeline.SUMMARY_FILE).read_text())
    assert {s: summary["stages"][s]["status"] for s in ("sft", "rm", "rl")} == {
        "sft": "ran",
        "rm": "ran",
        "rl": "ran",
    }
    assert summary["stages"]["rm"]["headline"]["test/accuracy"]["points"] == 3
    assert summary["stages"]["rl"]["wall_s"] > 0
    assert "test/win_rate" in first.stdout and "->" in first.stdout  # the printed summary

    again = run_recipe(MODULE, args, env)
    assert again.stdout.count("already finished") == 3
    assert {stage: read_jsonl(log_path / stage / "metrics.jsonl") for stage in rows} == rows
    summary = json.loads((log_path / pipeline.SUMMARY_FILE).read_text())
    assert {summary["stages"][s]["status"] for s in ("sft", "rm", "rl")} == {"skipped"}
    assert "test/gold_win_rate" in summary["stages"]["rl"]["headline"]  # still summarised from the logs


def test_defaults_chain_the_stages_on_the_builtin_model() -> None:
    cli = pipeline.PipelineConfig()
    assert cli.rank == 0 and cli.renderer == "role_colon" and cli.use_gold
    sft = pipeline.sft_config(cli)
    assert (
        sft.log_path == f"{pipeline.DEFAULT_LOG_PATH}/sft"
        and sft.lora_rank == 0
        and sft.load_checkpoint_path is None
    )
    rm = pipeline.rm_config(cli, "tinker://sft/weights/final")
    assert (
        rm.log_path == f"{pipeline.DEFAULT_LOG_PATH}/rm"
        and rm.load_checkpoint_path == "tinker://sft/weights/final"
    )
    assert (
        rm.dataset_builder.inner.include_test_set is False
        and rm.dataset_builder.seed == 0
        and len(rm.evaluator_builders) == 1
    )
    assert rm.optimizer.grad_clip_norm == 1.0
    clipped_cli = chz.entrypoint(pipeline.PipelineConfig, argv=["rm.optimizer.grad_clip_norm=0.5"])
    clipped = pipeline.rm_config(clipped_cli, "tinker://sft/weights/final")
    assert clipped.optimizer.grad_clip_norm == 0.5
    sft_record = CheckpointRecord(
        name="final",
        final=True,
        state_path="tinker://sft/weights/final",
        sampler_path="tinker://sft/sampler_weights/final",
    )
    rl = pipeline.rl_config(cli, sft_record, "tinker://rm/sampler_weights/final")
    assert rl.load_checkpoint_path == "tinker://sft/weights/final"
    assert rl.kl_reference_path == "tinker://sft/sampler_weights/final" and rl.kl_penalty_coef > 0
    assert rl.dataset_builder.preference_model_builder.rm_weights_path == "tinker://rm/sampler_weights/final"
    assert rl.dataset_builder.group_size == cli.rl.group_size
    assert rl.dataset_builder.tournament_pattern is TournamentPattern.ALL_PAIRS_BOTH_WAYS
    assert [e.temperature for e in rl.evaluator_builders] == [1.0, 0.0] and all(
        e.gold for e in rl.evaluator_builders
    )
    assert isinstance(rl.dataset_builder.audit_model_builder, GoldPreferenceModelBuilder)  # judge_agreement
    assert rl.max_steps == cli.rl.steps and rl.optimizer.lr_schedule == "constant"


def test_max_steps_caps_every_stage_and_the_gold_judge_needs_the_bundled_data() -> None:
    cli = pipeline.PipelineConfig(max_steps=3, comparison_dataset="Anthropic/hh-rlhf", lora_rank=8)
    sft_record = CheckpointRecord(name="final", final=True, state_path="tinker://a/weights/final")
    assert pipeline.sft_config(cli).max_steps == 3
    assert pipeline.rm_config(cli, "tinker://a/weights/final").max_steps == 3
    rl = pipeline.rl_config(cli, sft_record, "tinker://b/sampler_weights/final")
    assert rl.max_steps == 3 and rl.lora_rank == 8
    assert rl.kl_reference_path == "tinker://a/weights/final"  # no sampler path: the state is loaded instead
    assert not any(e.gold for e in rl.evaluator_builders) and rl.dataset_builder.audit_model_builder is None
    with pytest.raises(ValueError, match="max_steps"):
        pipeline.PipelineConfig(max_steps=0)


def test_a_skipped_stage_without_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sft\.run=False"):
        pipeline.main(
            pipeline.PipelineConfig(log_path=str(tmp_path / "nothing-here"), sft=pipeline.SFTStage(run=False))
        )


def test_summary_lines_show_first_and_last_values() -> None:
    text = format_summary(
        {"sft": {"test/nll": CurveSummary(6.2, 0.3, 0.3, 6.2, 0, 100, 3)}, "rm": {}}, {"sft": 12.0}
    )
    assert "SFT (12 s):" in text and "6.200 -> 0.300" in text
    assert "preference model: no evaluations logged" in text


def _row_datum(row: dict) -> Datum:
    return Datum(
        model_input=ModelInput.from_ints([row["i"], 0]),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(np.array([0])),
            "weights": TensorData.from_numpy(np.array([1.0])),
        },
    )


def _epoch_order(dataset: SeededEpochs, epoch: int) -> list[int]:
    dataset.set_epoch(epoch)
    return [d.model_input.to_ints()[0] for i in range(len(dataset)) for d in dataset.get_batch(i)]


def test_the_seed_orders_the_supervised_epochs_and_seed_zero_changes_nothing() -> None:
    rows = [{"i": i} for i in range(40)]
    plain = SupervisedDatasetFromHFDataset(rows, 4, map_fn=_row_datum)
    same = SeededEpochs(SupervisedDatasetFromHFDataset(rows, 4, map_fn=_row_datum), seed=0)
    other = SeededEpochs(SupervisedDatasetFromHFDataset(rows, 4, map_fn=_row_datum), seed=1)
    plain.set_epoch(1)
    assert _epoch_order(same, 1) == [
        d.model_input.to_ints()[0] for i in range(10) for d in plain.get_batch(i)
    ]
    assert _epoch_order(other, 0) != _epoch_order(same, 0)
    assert sorted(_epoch_order(other, 0)) == list(range(40))
    assert _epoch_order(other, 0) == _epoch_order(other, 0) != _epoch_order(other, 1)
    assert epoch_order_seed(0, 3) == 3
    with pytest.raises(ValueError, match="seed"):
        SeededDatasetBuilder(
            inner=pipeline.sft_config(pipeline.PipelineConfig()).dataset_builder.inner, seed=-1
        )


def _is_key(config_class: type, dotted: str) -> bool:
    """Whether `dotted` (e.g. "rm.optimizer.learning_rate") names a field of `config_class`."""
    for part in dotted.split("."):
        fields = chz.chz_fields(config_class)
        if part not in fields:
            return False
        config_class = fields[part].final_type
    return True


def test_every_old_flat_key_is_refused_naming_its_new_spelling() -> None:
    assert len(pipeline.RENAMED_KEYS) >= 35
    for old, new in pipeline.RENAMED_KEYS.items():
        assert _is_key(pipeline.PipelineConfig, new), new
        assert not _is_key(pipeline.PipelineConfig, old), old
        with pytest.raises(RenamedKeyError, match=rf"{old}=\.\.\. is now {re.escape(new)}=\.\.\."):
            check_renamed_keys([f"{old}=1"], pipeline.RENAMED_KEYS)
    check_renamed_keys(["rm.steps=400", "model_name=tiny-llama", "max_steps=2"], pipeline.RENAMED_KEYS)
    assert (
        pipeline.RENAMED_KEYS["base_model"] == "model_name"
        and pipeline.RENAMED_KEYS["rm_steps"] == "rm.steps"
    )
    assert pipeline.RENAMED_KEYS["sft_learning_rate"] == "sft.optimizer.learning_rate"


def test_the_command_line_names_the_new_spelling_of_an_old_key() -> None:
    done = subprocess.run(
        [sys.executable, "-m", MODULE, "rm_steps=400", "base_model=tiny-llama"],
        env=recipe_env(),
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert (
        "rm_steps=... is now rm.steps=..." in done.stderr
        and "base_model=... is now model_name=..." in done.stderr
    )


def test_the_stages_keep_their_defaults() -> None:
    cli = pipeline.PipelineConfig()
    assert (cli.sft.num_epochs, cli.sft.batch_size, cli.sft.max_length, cli.sft.eval_every) == (
        5,
        32,
        128,
        40,
    )
    assert cli.sft.optimizer == OptimizerConfig(
        learning_rate=3e-3, lr_schedule="cosine", lr_warmup_steps=20, grad_clip_norm=1.0
    )
    assert (cli.rm.steps, cli.rm.num_epochs, cli.rm.batch_size, cli.rm.eval_every) == (400, 2, 32, 100)
    assert cli.rm.optimizer == OptimizerConfig(
        learning_rate=1e-3, lr_schedule="cosine", lr_warmup_steps=20, grad_clip_norm=1.0
    )
    assert (cli.rl.steps, cli.rl.batch_size, cli.rl.group_size, cli.rl.max_tokens) == (30, 16, 4, 32)
    assert (cli.kl_penalty_coef, cli.rl.kl_penalty_mode, cli.rl.judge_topk, cli.rl.eval_every) == (
        0.1,
        "token",
        2,
        10,
    )
    assert cli.rl.optimizer == OptimizerConfig(learning_rate=5e-4, lr_schedule="constant")
    assert (cli.comparison_test_size, cli.save_every, cli.seed) == (400, 50, 0)
