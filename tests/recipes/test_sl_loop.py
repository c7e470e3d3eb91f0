"""Smoke test of `python -m cookbook.recipes.sl_loop`, the one-file SFT loop, against the shared test server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from cookbook.client.abstract import ServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.recipes import sl_loop
from tests.recipes.recipe_runner import recipe_env, run_recipe


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sl_loop_logs_every_step_evaluates_and_saves_the_final_weights(
    server: LocalServer, service: ServiceClient, tmp_path: Path
) -> None:
    log_path = tmp_path / "sl_loop"
    args = [f"log_path={log_path}", f"base_url={server.url}", "max_steps=4", "batch_size=8", "eval_every=2"]
    done = run_recipe("cookbook.recipes.sl_loop", args, recipe_env())

    rows = read_rows(log_path / "metrics.jsonl")
    train_rows = [r for r in rows if "train_mean_nll" in r]
    assert [r["step"] for r in train_rows] == [0, 1, 2, 3]
    assert all(math.isfinite(r["train_mean_nll"]) and r["num_sequences"] == 8 for r in train_rows)
    learning_rates = [r["learning_rate"] for r in train_rows]
    assert learning_rates[0] == 3e-3 and learning_rates == sorted(
        learning_rates, reverse=True
    )  # linear decay
    assert train_rows[-1]["train_mean_nll"] < train_rows[0]["train_mean_nll"]
    test_nll = {r["step"]: r["test/nll"] for r in rows if "test/nll" in r}
    assert sorted(test_nll) == [0, 2, 4]
    assert all(math.isfinite(nll) for nll in test_nll.values()) and test_nll[4] < test_nll[0]
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)  # one step's lines before the next's

    (record,) = read_rows(log_path / "checkpoints.jsonl")
    assert record["final"] and record["batch"] == 4
    assert record["state_path"] in done.stdout and record["sampler_path"] in done.stdout
    assert service.weights_info(record["state_path"]).base_model == "tiny-llama"
    assert (log_path / "metrics.png").stat().st_size > 0
    assert json.loads((log_path / "config.json").read_text())["max_steps"] == 4


def test_sl_loop_defaults_train_the_builtin_model_on_the_bundled_data() -> None:
    config = sl_loop.Config()
    assert (config.model_name, config.dataset, config.base_url, config.max_steps) == (
        "tiny-llama",
        "bundled",
        None,
        None,
    )
    assert config.log_path == "/tmp/cookbook-runs/sl_loop"


def test_the_one_file_loops_import_without_torch() -> None:
    code = "import sys, cookbook.recipes.sl_loop, cookbook.recipes.rl_basic; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=recipe_env()).returncode == 0
