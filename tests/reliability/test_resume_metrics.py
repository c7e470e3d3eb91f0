"""A resumed run logs the steps after its checkpoint again, so metrics.jsonl drops them first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cookbook.utils.jsonl import append_jsonl, read_jsonl
from cookbook.utils.run import TrainingRun
from tests.utils.test_training_run import UntouchableService, rl_config


def rows(log_path: Path, steps: range) -> None:
    for step in steps:
        append_jsonl(log_path / "metrics.jsonl", {"step": step, "loss": float(step)})


def enter(run: TrainingRun) -> None:
    async def go() -> None:
        async with run:
            pass

    asyncio.run(go())


def test_a_run_killed_before_its_first_checkpoint_starts_its_metrics_over(tmp_path: Path) -> None:
    config = rl_config(tmp_path)
    TrainingRun(config)
    rows(tmp_path / "run", range(3))
    enter(TrainingRun(config, UntouchableService(), step_key="batch"))
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl") == []


def test_a_resumed_run_keeps_the_rows_before_its_checkpoint(tmp_path: Path) -> None:
    config = rl_config(tmp_path)
    TrainingRun(config)
    rows(tmp_path / "run", range(7))
    append_jsonl(
        tmp_path / "run" / "checkpoints.jsonl",
        {"name": "000004", "batch": 4, "state_path": "tinker://r/weights/000004"},
    )
    enter(TrainingRun(config, UntouchableService(), step_key="batch"))
    assert [row["step"] for row in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [0, 1, 2, 3]


def test_a_finished_run_that_has_nothing_to_do_keeps_every_row(tmp_path: Path) -> None:
    config = rl_config(tmp_path, max_steps=4)
    TrainingRun(config)
    rows(tmp_path / "run", range(5))
    append_jsonl(
        tmp_path / "run" / "checkpoints.jsonl",
        {"name": "final", "batch": 4, "state_path": "tinker://r/weights/final", "final": True},
    )
    run = TrainingRun(config, UntouchableService(), step_key="batch")
    assert run.already_finished(4) is not None
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 5
