"""The RL Config's checks, and the re-run rules that need no server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cookbook.rl import train
from cookbook.utils.jsonl import append_jsonl
from cookbook.utils.run_dir import prepare_log_dir
from tests.loop_configs import make_loop_config

from .toy_env import UpperHalfDatasetBuilder

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there: any connection attempt would fail


def config(tmp_path: Path, **overrides: Any) -> train.Config:
    settings: dict[str, Any] = dict(
        learning_rate=1e-3,
        dataset_builder=UpperHalfDatasetBuilder(n_batches=4),
        model_name="tiny-llama",
        max_tokens=8,
        log_path=str(tmp_path / "run"),
        base_url=UNREACHABLE,
    )
    settings.update(overrides)
    return make_loop_config(train.Config, **settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", 0.0),
        ("max_tokens", 0),
        ("lora_rank", -1),
        ("temperature", -0.5),
        ("loss_fn", "cross_entropy"),
        ("num_substeps", 0),
        ("kl_penalty_coef", -0.1),
        ("kl_penalty_mode", "both"),
        ("eval_every", -1),
        ("save_every", -2),
        ("max_steps", -1),
        ("seed", -3),
    ],
)
def test_bad_settings_are_refused_naming_the_field(tmp_path: Path, field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        config(tmp_path, **{field: value})


def test_defaults(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert (cfg.lora_rank, cfg.kl_penalty_coef, cfg.kl_penalty_mode, cfg.temperature) == (
        32,
        0.0,
        "sequence",
        1.0,
    )
    assert (cfg.loss_fn, cfg.num_substeps, cfg.behavior_if_log_dir_exists) == (
        "importance_sampling",
        1,
        "resume",
    )
    assert (cfg.eval_every, cfg.save_every, cfg.evaluator_builders) == (20, 20, [])


def test_the_reference_is_used_for_a_penalty_or_when_named(tmp_path: Path) -> None:
    assert not config(tmp_path).uses_reference
    assert config(tmp_path, kl_penalty_coef=0.1).uses_reference
    assert config(tmp_path, kl_reference_path="tinker://r/sampler_weights/x").uses_reference


def test_adam_params_come_from_the_config(tmp_path: Path) -> None:
    params = config(tmp_path, adam_beta2=0.99, grad_clip_norm=1.0, weight_decay=0.1).optimizer.adam_params(
        0, 10
    )
    assert (params.learning_rate, params.beta1, params.beta2, params.eps) == (1e-3, 0.9, 0.99, 1e-8)
    assert (params.grad_clip_norm, params.weight_decay) == (1.0, 0.1)


@pytest.mark.parametrize("max_steps", [None, 3])
def test_a_finished_run_returns_without_contacting_the_server(
    tmp_path: Path, max_steps: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, max_steps=max_steps)
    prepare_log_dir(cfg.log_path, cfg)
    append_jsonl(
        Path(cfg.log_path) / "checkpoints.jsonl",
        {"name": "final", "batch": 4, "state_path": "tinker://r/weights/final", "final": True},
    )
    record = train.main(cfg)  # would raise a connection error if it tried to train
    assert (record.name, record.batch, record.final) == ("final", 4, True)
    assert "finished run" in capsys.readouterr().out
