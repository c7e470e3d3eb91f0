"""Smoke test of `python -m cookbook.recipes.sl_basic`, exactly as a newcomer runs it (bundled server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import chz
import pytest

from cookbook.recipes import sl_basic
from cookbook.recipes.renamed_keys import RenamedKeyError, check_renamed_keys
from cookbook.utils.checkpoints import load_checkpoints_file
from cookbook.utils.jsonl import read_jsonl
from cookbook.utils.run_dir import RunDirError
from tests.recipes.recipe_runner import recipe_env, run_recipe


def test_sl_basic_smoke_run_then_rerun_is_a_no_op_and_another_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path = tmp_path / "sl_basic"
    env = recipe_env(server_storage=tmp_path / "server-storage")
    args = ["max_steps=3", f"log_path={log_path}"]
    run_recipe("cookbook.recipes.sl_basic", args, env)

    rows = read_jsonl(log_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "train_mean_nll" in r] == [0, 1, 2]
    assert {r["step"] for r in rows if "test/nll" in r} == {0, 3}
    records = load_checkpoints_file(log_path)
    assert records[-1].final and records[-1].state_path and records[-1].sampler_path
    assert (log_path / "metrics.png").stat().st_size > 0
    assert (log_path / "config.json").exists()

    # Re-invocations are checked in this process (cheaper): both must stop before touching a server.
    final = sl_basic.main(sl_basic.CLIConfig(max_steps=3, log_path=str(log_path)))
    assert "already finished" in capsys.readouterr().out
    assert final.state_path == records[-1].state_path
    with pytest.raises(RunDirError, match=r"holds a different run.*learning_rate: 0.003 -> 0.01"):
        sl_basic.main(
            chz.entrypoint(
                sl_basic.CLIConfig,
                argv=["max_steps=3", f"log_path={log_path}", "optimizer.learning_rate=0.01"],
            )
        )
    assert read_jsonl(log_path / "metrics.jsonl") == rows


def test_sl_basic_defaults_train_the_builtin_model_with_full_weights() -> None:
    config = sl_basic.build_config(sl_basic.CLIConfig())
    assert config.model_name == "tiny-llama" and config.lora_rank == 0
    assert config.renderer_name == "role_colon"
    assert config.log_path == "/tmp/cookbook-runs/sl_basic"
    optimizer = config.optimizer
    assert (
        optimizer.learning_rate == 3e-3
        and optimizer.lr_warmup_steps > 0
        and optimizer.lr_schedule != "constant"
    )
    assert config.dataset_builder.common_config.batch_size == 32  # type: ignore[attr-defined]
    assert (
        sl_basic.build_config(sl_basic.CLIConfig(model_name="HuggingFaceTB/SmolLM2-135M-Instruct")).lora_rank
        == 32
    )


def test_the_recipe_and_training_loop_import_without_torch() -> None:
    code = (
        "import sys, cookbook.recipes.sl_basic, cookbook.supervised.train, cookbook.eval, cookbook.model_config; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=recipe_env()).returncode == 0


def test_the_optimizer_keys_moved_under_optimizer() -> None:
    with pytest.raises(RenamedKeyError, match=r"learning_rate=\.\.\. is now optimizer\.learning_rate=\.\.\."):
        check_renamed_keys(["max_steps=3", "learning_rate=0.01"], sl_basic.RENAMED_KEYS)
    config = chz.entrypoint(sl_basic.CLIConfig, argv=["optimizer.lr_warmup_steps=3"])
    assert (config.optimizer.learning_rate, config.optimizer.lr_warmup_steps) == (3e-3, 3)  # the rest kept
