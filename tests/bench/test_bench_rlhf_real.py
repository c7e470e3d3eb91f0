"""The real-model RLHF bench's pieces: reading curves and step costs back, the targets, the estimate.

The bench itself trains SmolLM2 for many minutes, so it is not run here; `--quick` is its smoke run
(see bench/README.md). These tests feed its readers a pipeline log written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_rlhf_real
from cookbook.model_config import recipe_defaults


def write_stage(log: Path, stage: str, rows: list[dict[str, float]]) -> None:
    (log / stage).mkdir(parents=True)
    (log / stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def pipeline_log(tmp_path: Path, gold: list[float]) -> Path:
    log = tmp_path / "pipeline"
    write_stage(
        log,
        "sft",
        [
            {"step": 0, "time/total": 5.0, "time/evals": 3.0, "test/nll": 2.0},
            {"step": 1, "time/total": 2.0},
            {"step": 2, "time/total": 2.0},
            {"step": 3, "time/evals": 4.0, "test/nll": 1.0},
        ],
    )
    write_stage(
        log,
        "rm",
        [
            {"step": 0, "time/total": 3.0},
            {
                "step": 1,
                "time/total": 7.0,
                "time/evals": 4.0,
                "test/accuracy": 0.9,
                "test/accuracy/correctness": 0.8,
            },
        ],
    )
    rl: list[dict[str, float]] = []
    for i, g in enumerate(gold):  # an evaluated step (30 s), then a plain one (10 s)
        rl += [
            {"step": 2 * i, "time/total": 30.0, "time/eval": 20.0, "test/gold_win_rate": g},
            {"step": 2 * i + 1, "time/total": 10.0},
        ]
    write_stage(log, "rl", rl)
    return log


def test_curves_step_costs_and_targets_are_read_from_the_stage_logs(tmp_path: Path) -> None:
    log = pipeline_log(tmp_path, gold=[0.2, 0.25, 0.35])
    curves = bench_rlhf_real.print_curves(log, ("sft", "rm", "rl"))
    assert curves["sft"]["test/nll"] == [(0, 2.0), (3, 1.0)]
    assert curves["rm"]["test/accuracy/correctness"] == [(1, 0.8)]
    assert curves["rl"]["test/gold_win_rate"] == [(0, 0.2), (2, 0.25), (4, 0.35)]
    assert bench_rlhf_real.step_costs(log / "sft") == {"steps": 3.0, "step_s": 2.0, "eval_s": 3.5}
    rows = {name: (value, passed) for name, value, passed in bench_rlhf_real.targets(curves)}
    assert rows["PM test/accuracy last >= 0.85"] == (0.9, True)
    gold_rise = rows["RL test/gold_win_rate rise >= +0.10"]
    assert abs(gold_rise[0] - 0.15) < 1e-9 and gold_rise[1]
    assert rows["RL test/gold_win_rate min - first >= 0"] == (0.0, True)


def test_a_gold_win_rate_that_dips_below_its_start_fails(tmp_path: Path) -> None:
    curves = bench_rlhf_real.print_curves(pipeline_log(tmp_path, gold=[0.3, 0.1, 0.45]), ("rl",))
    rows = {name: passed for name, _, passed in bench_rlhf_real.targets(curves)}
    assert rows["RL test/gold_win_rate rise >= +0.10"]
    assert not rows["RL test/gold_win_rate min - first >= 0"]


def test_the_full_run_estimate_prices_steps_and_evaluations(tmp_path: Path) -> None:
    log = pipeline_log(tmp_path, gold=[0.2, 0.25, 0.35])
    plan = {
        "sft.steps": 10,
        "sft.eval_every": 5,
        "rm.steps": 4,
        "rm.eval_every": 4,
        "rl.steps": 2,
        "rl.eval_every": 1,
        "rl.eval_comparisons": 48,
        "comparison_test_size": 100,
    }
    estimate = bench_rlhf_real.estimate_full_run_s(log, plan)
    assert estimate["sft"] == 10 * 2.0 + 3 * 3.5
    assert estimate["rm"] == 4 * 3.0 + 2 * 4.0
    assert estimate["rl"] == 2 * 10.0 + 3 * 20.0
    # A run with smaller evaluations prices the default's evaluations per comparison.
    small = bench_rlhf_real.estimate_full_run_s(
        log, plan, ["comparison_test_size=10", "rl.eval_comparisons=4"]
    )
    assert small["sft"] == estimate["sft"]
    assert small["rm"] == 4 * 3.0 + 2 * 4.0 * 10
    assert small["rl"] == 2 * 10.0 + 3 * 20.0 * 12
    assert set(bench_rlhf_real.QUICK_ARGS) and all("=" in arg for arg in bench_rlhf_real.QUICK_ARGS)
    assert {"sft.steps", "rm.steps", "rl.steps"} <= set(recipe_defaults("rlhf_pipeline", "smollm2"))
