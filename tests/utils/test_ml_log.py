"""setup_logging / Logger: config.json, metrics.jsonl, console line, logs.log, optional wandb."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import chz
import numpy as np
import pytest

from cookbook.utils.ml_log import Logger, console_line, setup_logging


@chz.chz
class Config:
    log_path: str = "/tmp/run"
    learning_rate: float = 2e-4


def _metrics_rows(log_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]


def test_writes_config_metrics_and_console_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with setup_logging(tmp_path / "run", config=Config()) as ml:
        ml.log_metrics(
            {
                "train_mean_nll": 1.23456,
                "learning_rate": np.float64(1e-4),
                "num_tokens": np.int64(512),
                "progress": 0.5,
            },
            step=0,
        )
        ml.log_metrics({"test/nll": 2.5}, step=1)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["learning_rate"] == 2e-4 and config["log_path"] == "/tmp/run"
    assert _metrics_rows(tmp_path / "run") == [
        {"step": 0, "train_mean_nll": 1.23456, "learning_rate": 1e-4, "num_tokens": 512, "progress": 0.5},
        {"step": 1, "test/nll": 2.5},
    ]
    out = capsys.readouterr().out.splitlines()
    assert out == ["step 0 | train_mean_nll 1.235 | learning_rate 0.0001", "step 1 | test/nll 2.5"]


def test_console_line_falls_back_to_the_first_numeric_metrics() -> None:
    assert (
        console_line({"custom": 3, "name": "x", "other": 0.123456}, step=7)
        == "step 7 | custom 3 | other 0.1235"
    )
    assert console_line({}, step=2) == "step 2"


def test_log_hparams_rewrites_config(tmp_path: Path) -> None:
    with setup_logging(tmp_path, console=False) as ml:
        assert not (tmp_path / "config.json").exists()
        ml.log_hparams({"a": 1, "nested": Config()})
    assert json.loads((tmp_path / "config.json").read_text())["nested"]["learning_rate"] == 2e-4


def test_metrics_reach_disk_even_if_the_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from cookbook.utils.ml_log import setup_logging\n"
        "ml = setup_logging(sys.argv[1], console=False)\n"
        "for step in range(3):\n"
        "    ml.log_metrics({'train_mean_nll': 1.0 / (step + 1)}, step=step)\n"
        "os._exit(1)  # no close, no interpreter shutdown: only flushed lines survive\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert [row["step"] for row in _metrics_rows(tmp_path)] == [0, 1, 2]


def test_python_logging_goes_to_logs_log_and_is_detached_on_close(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    ml = setup_logging(tmp_path, console=False)
    logging.getLogger("cookbook.some_loop").info("resuming from step %d", 20)
    logging.getLogger("httpx").info("HTTP Request: POST /api/v1/forward")  # third-party chatter
    logging.getLogger("some_library").warning("careful")
    ml.close()
    logging.getLogger("cookbook.some_loop").info("after close")
    text = (tmp_path / "logs.log").read_text()
    assert "resuming from step 20" in text and "careful" in text
    assert "HTTP Request" not in text and "after close" not in text
    assert root.handlers == before


def test_invalid_metrics_are_refused(tmp_path: Path) -> None:
    with setup_logging(tmp_path, console=False) as ml:
        with pytest.raises(TypeError, match="step must be an int"):
            ml.log_metrics({"a": 1.0}, step=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'step' is reserved"):
            ml.log_metrics({"step": 3}, step=3)
        with pytest.raises(TypeError, match="metric names must be strings"):
            ml.log_metrics({1: 2.0}, step=0)  # type: ignore[dict-item]
    with pytest.raises(RuntimeError, match="closed Logger"):
        ml.log_metrics({"a": 1.0}, step=0)
    assert not (tmp_path / "metrics.jsonl").read_text()


def test_reopening_a_killed_runs_metrics_file_repairs_its_tail(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "x": 1}\n{"step": 1, "x"')
    with Logger(tmp_path, console=False, configure_python_logging=False) as ml:
        ml.log_metrics({"x": 2}, step=1)
    assert _metrics_rows(tmp_path) == [{"step": 0, "x": 1}, {"step": 1, "x": 2}]


def test_wandb_missing_gives_a_warning_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    with caplog.at_level(logging.WARNING), setup_logging(tmp_path, wandb_project="proj", console=False) as ml:
        ml.log_metrics({"a": 1.0}, step=0)
    assert "wandb is not installed" in caplog.text
    assert _metrics_rows(tmp_path) == [{"step": 0, "a": 1.0}]


class _RecordingWandbRun:
    """Stands in for the wandb service: records what the Logger sends across that boundary."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, Any], int]] = []
        self.config = types.SimpleNamespace(
            update=lambda values, allow_val_change: self.updates.append(values)
        )
        self.updates: list[dict[str, Any]] = []
        self.finished = False

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.logged.append((metrics, step))

    def finish(self) -> None:
        self.finished = True


def test_wandb_receives_config_metrics_and_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _RecordingWandbRun()
    init_kwargs: dict[str, Any] = {}

    def init(**kwargs: Any) -> _RecordingWandbRun:
        init_kwargs.update(kwargs)
        return run

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    ml = setup_logging(tmp_path, wandb_project="proj", wandb_name="rlhf", config=Config(), console=False)
    ml.log_metrics({"loss": np.float32(0.5)}, step=3)
    ml.log_hparams({"extra": 1})
    ml.close()
    assert init_kwargs["project"] == "proj" and init_kwargs["name"] == "rlhf"
    assert init_kwargs["config"]["learning_rate"] == 2e-4
    assert run.logged == [({"loss": 0.5}, 3)]
    assert run.updates == [{"extra": 1}]
    assert run.finished


def test_wandb_init_failure_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def init(**kwargs: Any) -> None:
        raise RuntimeError("api key not configured")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    with caplog.at_level(logging.WARNING), setup_logging(tmp_path, wandb_project="proj", console=False) as ml:
        ml.log_metrics({"a": 1}, step=0)
    assert "wandb.init failed (RuntimeError: api key not configured)" in caplog.text
