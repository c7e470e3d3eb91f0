"""TrainingProgress: a bar on terminals only, silent and harmless when output is piped."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook.utils.progress import PROGRESS_ENV, TqdmLoggingHandler, TrainingProgress, progress_enabled


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, to see what a user at a console would get."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)


def test_enabled_only_on_a_terminal_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress_enabled(FakeTerminal())
    assert not progress_enabled(io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not progress_enabled(closed)
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert progress_enabled(io.StringIO())
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not progress_enabled(FakeTerminal())


def test_piped_bar_writes_nothing_but_still_counts() -> None:
    pipe = io.StringIO()
    with TrainingProgress(total_steps=10, initial_step=4, stream=pipe) as bar:
        assert not bar.enabled
        for _ in range(3):
            bar.update({"train_mean_nll": 1.0})
        assert bar.n == 7
    assert pipe.getvalue() == ""


def test_terminal_bar_shows_resume_position_and_headline_metrics() -> None:
    term = FakeTerminal()
    with TrainingProgress(total_steps=10, initial_step=4, desc="sft", stream=term) as bar:
        bar.update({"train_mean_nll": 1.23456, "num_tokens": 99, "test/nll": 2.0})
    text = term.getvalue()
    assert "sft" in text and "5/10" in text
    assert "train_mean_nll 1.235" in text and "test/nll 2" in text and "num_tokens" not in text


def test_bad_positions_are_refused() -> None:
    with pytest.raises(ValueError, match="initial_step"):
        TrainingProgress(total_steps=3, initial_step=4, stream=io.StringIO())
    with pytest.raises(ValueError, match="initial_step"):
        TrainingProgress(total_steps=3, initial_step=-1, stream=io.StringIO())


def test_logging_handler_writes_records_through_tqdm() -> None:
    stream = io.StringIO()
    handler = TqdmLoggingHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    record = logging.LogRecord("cookbook.x", logging.WARNING, __file__, 1, "careful %s", ("now",), None)
    handler.emit(record)
    assert stream.getvalue() == "WARNING careful now\n"


_LOOP = (
    "import sys\n"
    "from cookbook.utils.ml_log import setup_logging\n"
    "from cookbook.utils.progress import TrainingProgress\n"
    "ml = setup_logging(sys.argv[1])\n"
    "with TrainingProgress(total_steps=5) as bar:\n"
    "    for step in range(5):\n"
    "        metrics = {'train_mean_nll': 1.0 / (step + 1)}\n"
    "        ml.log_metrics(metrics, step=step)\n"
    "        bar.update(metrics)\n"
    "ml.close()\n"
)


def _run_loop(tmp_path: Path, env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PROGRESS_ENV}
    if env_value is not None:
        env[PROGRESS_ENV] = env_value
    return subprocess.run(
        [sys.executable, "-c", _LOOP, str(tmp_path)], capture_output=True, text=True, env=env
    )


def test_a_piped_training_loop_prints_clean_lines_and_no_bar(tmp_path: Path) -> None:
    result = _run_loop(tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"step {s} | train_mean_nll {1.0 / (s + 1):.4g}" for s in range(5)]
    assert "\r" not in result.stderr and "5/5" not in result.stderr


def test_forcing_the_bar_on_a_pipe_works(tmp_path: Path) -> None:
    result = _run_loop(tmp_path, "1")
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stderr
    assert len(result.stdout.splitlines()) == 5


def test_a_closed_console_pipe_does_not_stop_training(tmp_path: Path) -> None:
    loop = _LOOP.replace("total_steps=5", "total_steps=300").replace("range(5)", "range(300)")
    proc = subprocess.Popen(
        [sys.executable, "-c", loop, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`: the reader goes away after one line
    _, stderr = proc.communicate()
    assert "Traceback" not in stderr, stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(300))
