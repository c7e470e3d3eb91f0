"""prepare_log_dir: start, resume, refuse or overwrite, decided by the saved config."""

from __future__ import annotations

import json
from pathlib import Path

import chz
import pytest

from cookbook.utils.run_dir import RunDirError, config_differences, prepare_log_dir


@chz.chz
class NoRobotsBuilder:
    batch_size: int = 8


@chz.chz
class HHHBuilder:
    batch_size: int = 8


@chz.chz
class SFTConfig:
    log_path: str
    learning_rate: float = 2e-4
    max_steps: int | None = None
    eval_every: int = 10
    wandb_project: str | None = None
    dataset_builder: object = chz.field(default_factory=NoRobotsBuilder)


def _config(tmp_path: Path, **overrides: object) -> SFTConfig:
    return SFTConfig(log_path=str(tmp_path / "run"), **overrides)  # type: ignore[arg-type]


def test_a_new_directory_starts_a_run_and_holds_its_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert prepare_log_dir(run, _config(tmp_path)) is False
    saved = json.loads((run / "config.json").read_text())
    assert saved["learning_rate"] == 2e-4 and saved["dataset_builder"]["batch_size"] == 8
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_log_dir(empty, _config(tmp_path)) is False


def test_the_same_run_resumes_even_when_volatile_keys_change(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_log_dir(run, _config(tmp_path))
    assert prepare_log_dir(run, _config(tmp_path)) is True
    assert prepare_log_dir(run, _config(tmp_path, max_steps=5, eval_every=2, wandb_project="p")) is True
    assert json.loads((run / "config.json").read_text())["max_steps"] == 5  # refreshed


def test_another_runs_directory_is_refused_naming_the_differences(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_log_dir(run, _config(tmp_path))
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(RunDirError, match=r"learning_rate: 0\.0002 -> 0\.001") as err:
        prepare_log_dir(run, _config(tmp_path, learning_rate=1e-3))
    assert "behavior_if_exists='overwrite'" in str(err.value)
    with pytest.raises(RunDirError, match=r"dataset_builder\.__class__: .*NoRobotsBuilder.* -> .*HHHBuilder"):
        prepare_log_dir(run, _config(tmp_path, dataset_builder=HHHBuilder()))
    with pytest.raises(RunDirError, match=r"dataset_builder\.batch_size: 8 -> 16"):
        prepare_log_dir(run, _config(tmp_path, dataset_builder=NoRobotsBuilder(batch_size=16)))
    assert (run / "metrics.jsonl").exists()  # refused runs touch nothing
    assert json.loads((run / "config.json").read_text())["learning_rate"] == 2e-4


def test_overwrite_removes_the_old_run_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_log_dir(run, _config(tmp_path))
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    (run / "iteration_000001").mkdir()
    (run / "iteration_000001" / "rollouts.jsonl").write_text("{}\n")
    assert (
        prepare_log_dir(run, _config(tmp_path, learning_rate=1e-3), behavior_if_exists="overwrite") is False
    )
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    assert json.loads((run / "config.json").read_text())["learning_rate"] == 1e-3


def test_raise_refuses_any_existing_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_log_dir(run, _config(tmp_path), behavior_if_exists="raise")
    with pytest.raises(RunDirError, match="already holds a run"):
        prepare_log_dir(run, _config(tmp_path), behavior_if_exists="raise")


def test_a_directory_that_holds_no_run_is_never_used_or_deleted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    for behavior in ("resume", "overwrite", "raise"):
        with pytest.raises(RunDirError, match="holds no run"):
            prepare_log_dir(home, _config(tmp_path), behavior_if_exists=behavior)  # type: ignore[arg-type]
    assert (home / "thesis.tex").read_text() == "precious"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(RunDirError, match="not a directory"):
        prepare_log_dir(a_file, _config(tmp_path))


def test_run_files_without_a_config_cannot_be_resumed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints.jsonl").write_text('{"name": "000010"}\n')
    with pytest.raises(RunDirError, match=r"no config\.json"):
        prepare_log_dir(run, _config(tmp_path))
    (run / "config.json").write_text("{not json")
    with pytest.raises(RunDirError, match="not valid JSON"):
        prepare_log_dir(run, _config(tmp_path))
    assert prepare_log_dir(run, _config(tmp_path), behavior_if_exists="overwrite") is False


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="behavior_if_exists must be one of"):
        prepare_log_dir(tmp_path / "r", {}, behavior_if_exists="ask")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a mapping"):
        prepare_log_dir(tmp_path / "r", [1, 2])


def test_config_differences_ignores_keys_at_any_depth_and_reports_missing_ones() -> None:
    old = {"sft": {"log_path": "/a", "lr": 1}, "wandb_name": "x", "gone": 1}
    new = {"sft": {"log_path": "/b", "lr": 1}, "wandb_name": "y", "added": [1, 2]}
    assert config_differences(old, new) == ["gone: 1 -> <missing>", "added: <missing> -> [1, 2]"]
    assert config_differences(old, new, ignore_keys=("gone", "added", "sft.log_path", "wandb_*")) == []
    assert config_differences({"a": "x" * 100}, {"a": "y"})[0].startswith('a: "xxxx')
