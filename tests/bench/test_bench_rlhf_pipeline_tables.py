"""The pipeline bench's tables and JSON, built from made-up runs of a tiny config (no pipeline runs, no timing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_rlhf_pipeline as bench
from cookbook.recipes.preference.rlhf.report import STAGES, CurveSummary

WALLS = {"sft": 10.0, "rm": 5.0, "rl": 20.0}
WALLS_IN_PROCESS = {"sft": 8.0, "rm": 4.0, "rl": 16.0}  # 1.25x faster on every stage


def curve(first: float, last: float) -> CurveSummary:
    return CurveSummary(first, last, min(first, last), max(first, last), 0, 2, 3)


def run(seed: int, in_process: bool = False, gold_rise: float = 0.2) -> bench.RunResult:
    """A run as `run_pipeline` returns it."""
    walls = WALLS_IN_PROCESS if in_process else WALLS
    stages = {
        stage: {
            "status": "ran",
            "wall_s": walls[stage],
            "client_cpu_s": 3.0,
            "server_cpu_s": None if in_process else 6.0,
            "total_cpu_s": 3.0 if in_process else 9.0,
            "compute_s": {"training": 4.0, "sampling": 2.0, "other": 0.5, "compute": 6.5},
            "waiting_s": walls[stage] - 6.5,
        }
        for stage in STAGES
    }
    summaries = {
        "sft": {"test/nll": curve(1.0, 0.3)},
        "rm": {"test/accuracy": curve(0.5, 0.9), "test/accuracy/correctness": curve(0.5, 0.8)},
        "rl": {"test/win_rate": curve(0.5, 0.75), "test/gold_win_rate": curve(0.5, 0.5 + gold_rise)},
    }
    times = {
        "sft": {"time/evals": 1.5, "time/save": 0.25},
        "rm": {"time/evals": 2.0},
        "rl": {"time/eval": 4.0},
    }
    pipeline = {"stages": stages, "server_startup_s": 2.0}
    return bench.RunResult(
        seed,
        Path(f"/runs/seed{seed}"),
        0,
        40.0 if in_process else 50.0,
        80.0,
        summaries,
        pipeline,
        times,
        in_process,
    )


def test_the_profile_puts_each_stage_beside_its_in_process_baseline() -> None:
    result = run(0)
    result.baseline = run(0, in_process=True)
    assert result.stage_ratio("rl") == 1.25 and result.baseline.stage_ratio("rl") is None
    assert result.profile("sft") == {
        "wall_s": 10.0,
        "client_cpu_s": 3.0,
        "server_cpu_s": 6.0,
        "training_s": 4.0,
        "sampling_s": 2.0,
        "other_s": 0.5,
        "waiting_s": 3.5,
        "eval_s": 1.5,
        "save_s": 0.25,
    }
    assert result.profile("rl")["eval_s"] == 4.0 and result.profile("rl")["save_s"] is None
    lines = bench.profile_table(result).render().splitlines()
    header = lines[1].split()
    assert header[:3] == ["stage", "run", "ratio"] and "waiting" in header and "eval" in header
    sft_http = next(line for line in lines if line.startswith("sft") and " http " in line).split()
    assert sft_http[:4] == ["sft", "http", "1.25", "10.0"]
    assert any(line.startswith("rl") and "in-process" in line for line in lines)
    whole = [line.split() for line in lines if line.startswith("whole process")]
    assert [row[2:] for row in whole] == [["http", "50.0"], ["in-process", "1.25", "40.0"]]


def test_targets_spread_and_json_over_seeds_with_one_baseline() -> None:
    results = [run(0), run(1, gold_rise=0.1), run(2, gold_rise=0.3)]
    results[0].baseline = run(0, in_process=True)
    rows = {row["target"]: row for row in results[1].target_rows()}
    assert rows["sft wall / in-process wall"]["pass"] is None  # not measured on this seed
    assert rows["RL test/gold_win_rate rise"]["pass"] is False
    first = {row["target"]: row for row in results[0].target_rows()}
    assert first["rl wall / in-process wall"] == {
        "target": "rl wall / in-process wall",
        "goal": f"<= {bench.STAGE_RATIO_LIMIT}",
        "value": 1.25,
        "pass": True,
    }

    spread = bench.seed_spread(results)
    gold = spread["RL test/gold_win_rate rise"]
    assert gold is not None
    assert [gold["min"], gold["median"], gold["max"], gold["n"]] == pytest.approx([0.1, 0.2, 0.3, 3])
    assert spread["rm wall (s)"] == {"min": 5.0, "median": 5.0, "max": 5.0, "n": 3}
    assert spread["sft wall / in-process wall"] == {"min": 1.25, "median": 1.25, "max": 1.25, "n": 1}

    tables = bench.report_tables(results)
    titles = [table.title for table in tables]
    assert titles[-2:] == ["targets", "spread over seeds 0,1,2"]
    assert sum("per-stage profile" in title for title in titles) == 3
    targets = tables[-2].render()
    assert "- (no baseline run)" in targets and "1.250 PASS" in targets

    data = json.loads(json.dumps(results[0].to_dict()))
    assert data["mode"] == "http" and data["baseline"]["mode"] == "in-process"
    assert data["stage_ratios"] == {stage: 1.25 for stage in STAGES}
    assert data["profile"]["rm"]["eval_s"] == 2.0


def test_time_metrics_are_summed_over_a_stages_rows(tmp_path: Path) -> None:
    rows = [
        {"step": 0, "time/evals": 1.0, "loss": 2.0},
        {"step": 1, "time/evals": 0.5, "time/save": 0.25},
        "junk",
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert bench.stage_time_metrics(tmp_path) == {"time/evals": 1.5, "time/save": 0.25}
    assert bench.stage_time_metrics(tmp_path / "missing") == {}
