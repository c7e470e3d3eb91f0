"""The real-model DPO bench's pieces: its config, reading the curves back, the targets.

The bench itself trains SmolLM2 for many minutes, so it is not run here; `--quick` is its smoke run
(see bench/README.md). These tests feed its readers a run log written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_dpo_real
from cookbook.model_config import recipe_defaults


def write_stage(log: Path, stage: str, rows: list[dict[str, float]]) -> None:
    (log / stage).mkdir(parents=True)
    (log / stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_log(tmp_path: Path, accuracy: list[float]) -> Path:
    log = tmp_path / "dpo-run"
    write_stage(log, "sft", [{"step": 0, "test/nll": 2.0}, {"step": 1, "time/total": 2.0, "test/nll": 1.5}])
    rows: list[dict[str, float]] = []
    for i, value in enumerate(accuracy):  # an evaluated step, then a plain one
        rows += [
            {"step": 2 * i, "time/total": 9.0, "time/evals": 5.0, "test/accuracy": value, "test/margin": i},
            {"step": 2 * i + 1, "time/total": 4.0},
        ]
    write_stage(log, "dpo", rows)
    return log


def test_curves_and_targets_are_read_from_the_stage_logs(tmp_path: Path) -> None:
    curves = bench_dpo_real.curves_of(run_log(tmp_path, accuracy=[0.5, 0.7, 0.8]))
    assert curves["sft"]["test/nll"] == [(0, 2.0), (1, 1.5)]
    assert curves["dpo"]["test/accuracy"] == [(0, 0.5), (2, 0.7), (4, 0.8)]
    assert curves["dpo"]["test/margin"] == [(0, 0), (2, 1), (4, 2)]
    assert bench_dpo_real.step_costs(tmp_path / "dpo-run" / "dpo") == {
        "steps": 6.0,
        "step_s": 4.0,
        "eval_s": 5.0,
    }
    rows = {name: (value, passed) for name, value, passed in bench_dpo_real.targets(curves)}
    last, rise = rows.values()
    assert last == (0.8, True)
    assert abs(rise[0] - 0.3) < 1e-9 and rise[1]


def test_an_accuracy_that_barely_moves_fails(tmp_path: Path) -> None:
    curves = bench_dpo_real.curves_of(run_log(tmp_path, accuracy=[0.5, 0.55, 0.6]))
    assert [passed for _, _, passed in bench_dpo_real.targets(curves)] == [False, False]
    assert [passed for _, _, passed in bench_dpo_real.targets({})] == [False, False]


def test_the_bench_runs_the_recipe_with_the_pretrained_defaults_under_its_own_args(tmp_path: Path) -> None:
    defaults = recipe_defaults("dpo", bench_dpo_real.SERVED_NAME)
    cli = bench_dpo_real.recipe_config("http://127.0.0.1:1", tmp_path, ["max_steps=3"])
    assert cli.max_steps == 3 and cli.model_name == bench_dpo_real.SERVED_NAME
    assert cli.optimizer.learning_rate == defaults["optimizer.learning_rate"]
    assert cli.sft.steps == defaults["sft.steps"] and cli.lora_rank is None  # LoRA at the default rank
    quick = bench_dpo_real.recipe_config("http://127.0.0.1:1", tmp_path, bench_dpo_real.QUICK_ARGS)
    assert (quick.sft.steps, quick.max_steps, quick.test_size) == (2, 3, 8)
