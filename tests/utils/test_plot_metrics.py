"""plot_metrics: a real PNG of the run's main curves, tolerant of whatever the run logged."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import pytest
from matplotlib.image import imread

from cookbook.utils.ml_log import Logger
from cookbook.utils.plotting import choose_keys, load_curves, plot_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _log_run(log_dir: Path, rows: list[dict[str, object]]) -> None:
    with Logger(log_dir, console=False, configure_python_logging=False) as ml:
        for step, metrics in enumerate(rows):
            ml.log_metrics(metrics, step=step)


def _check_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000  # axes, curves and labels, not an empty canvas
    height, width = imread(path).shape[:2]
    return width, height


def test_plots_the_default_keys_that_were_logged(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"train_mean_nll": 3.0 - 0.1 * s, "learning_rate": 1e-4, "time/total": 0.5} for s in range(12)
    ]
    for s in range(0, 12, 4):
        rows[s]["test/nll"] = 3.2 - 0.1 * s
    _log_run(tmp_path, rows)
    curves = load_curves(tmp_path / "metrics.jsonl")
    assert choose_keys(curves, None) == ["train_mean_nll", "test/nll"]
    assert curves["test/nll"] == ([0, 4, 8], [3.2, pytest.approx(2.8), pytest.approx(2.4)])
    out = plot_metrics(tmp_path)
    assert out == tmp_path / "metrics.png"
    width, height = _check_png(out)
    assert (width, height) == (900, 320)  # two subplots side by side at 100 dpi


def test_a_later_value_for_a_step_wins_and_junk_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 0, "dpo_loss": 0.69, "note": "text", "flag": true}\n'
        '{"step": 1, "dpo_loss": 0.5}\n'
        "garbage line\n"
        '{"step": 1, "dpo_loss": 0.6, "accuracy": NaN}\n'
        '{"no_step": 1}\n'
        '{"step": 2, "dpo_loss": 0.4'
    )
    curves = load_curves(tmp_path / "metrics.jsonl")
    assert curves == {"dpo_loss": ([0, 1], [0.69, 0.6])}
    _check_png(plot_metrics(tmp_path, out_name="dpo.png"))


def test_requested_keys_that_are_missing_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _log_run(tmp_path, [{"env/all/reward/total": r, "optim/entropy": 1.0} for r in (0.1, 0.3, 0.2)])
    with caplog.at_level(logging.WARNING):
        out = plot_metrics(tmp_path, keys=["env/all/reward/total", "test/win_rate"])
    assert "test/win_rate" in caplog.text
    assert _check_png(out)[0] == 450  # one subplot


def test_without_default_keys_a_few_other_curves_are_drawn(tmp_path: Path) -> None:
    _log_run(tmp_path, [{"custom/score": s, "time/step": 0.1} for s in range(5)])
    assert choose_keys(load_curves(tmp_path / "metrics.jsonl"), None) == ["custom/score"]


def test_nothing_to_plot_still_gives_a_figure_saying_so(tmp_path: Path) -> None:
    out = plot_metrics(tmp_path / "empty_run")
    assert out.exists() and out.read_bytes().startswith(PNG_MAGIC)


def test_does_not_change_the_matplotlib_backend(tmp_path: Path) -> None:
    before = matplotlib.get_backend()
    _log_run(tmp_path, [{"train_mean_nll": 1.0}, {"train_mean_nll": 0.5}])
    plot_metrics(tmp_path)
    assert matplotlib.get_backend() == before
