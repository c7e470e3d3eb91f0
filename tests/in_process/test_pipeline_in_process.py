"""The RLHF pipeline end to end with `base_url=inprocess://`: every stage runs on the engine in its own process."""

from __future__ import annotations

import json
from pathlib import Path

from cookbook.utils.jsonl import read_jsonl
from tests.recipes.recipe_runner import recipe_env, run_recipe

HEADLINE = {"sft": "test/nll", "rm": "test/accuracy", "rl": "test/gold_win_rate"}


def test_the_pipeline_runs_in_process_and_profiles_its_stages(tmp_path: Path) -> None:
    log_path = tmp_path / "rlhf"
    args = [
        f"log_path={log_path}",
        "base_url=inprocess://",
        "max_steps=2",
        "comparison_test_size=60",
        "rl.eval_comparisons=4",
        "rl.batch_size=2",
        "rl.max_tokens=12",
    ]
    # The timed entry point: the pipeline itself, with each stage's cost measured on the in-process engine.
    run_recipe("bench.timed_rlhf_pipeline", args, recipe_env(server_storage=tmp_path / "storage"))

    for stage, key in HEADLINE.items():
        rows = read_jsonl(log_path / stage / "metrics.jsonl")
        assert any(key in row for row in rows), (stage, key)
    summary = json.loads((log_path / "pipeline_summary.json").read_text())
    for stage in HEADLINE:
        cost = summary["stages"][stage]
        assert cost["status"] == "ran" and cost["server_cpu_s"] is None  # no server process
        assert cost["total_cpu_s"] == cost["client_cpu_s"] > 0
        assert set(cost["compute_s"]) == {"training", "sampling", "other", "compute"}
        assert cost["compute_s"]["training"] > 0
        assert cost["waiting_s"] == cost["wall_s"] - cost["compute_s"]["compute"]
    assert summary["stages"]["rl"]["compute_s"]["sampling"] > 0
    assert (tmp_path / "storage").is_dir()  # the in-process engine used the storage the environment named
