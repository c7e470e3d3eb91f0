"""The RL loop's learning-rate schedule: the rate each step asks for, and the rate the server used."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook.client.local_server import LocalServer
from cookbook.rl import train

from .test_train_on_server import make_config, train_rows
from .toy_env import UpperHalfDatasetBuilder


def test_the_default_is_constant_and_linear_decays_from_the_first_step(tmp_path: Path) -> None:
    constant = make_config(tmp_path, "http://unused")
    assert [constant.optimizer.lr_at(s, 4) for s in range(4)] == [1e-2] * 4
    linear = make_config(tmp_path, "http://unused", lr_schedule="linear")
    assert [linear.optimizer.lr_at(s, 4) for s in range(4)] == pytest.approx([1e-2, 7.5e-3, 5e-3, 2.5e-3])
    warm = make_config(tmp_path, "http://unused", lr_schedule="cosine", lr_warmup_steps=2)
    assert [warm.optimizer.lr_at(s, 4) for s in range(4)] == pytest.approx([5e-3, 1e-2, 1e-2, 5e-3])
    # A warm-up as long as the run is cut so that the run still has a step to decay over.
    assert make_config(tmp_path, "http://unused", lr_schedule="linear", lr_warmup_steps=10).optimizer.lr_at(
        0, 1
    ) == pytest.approx(1e-2)
    assert warm.optimizer.adam_params(3, 4).learning_rate == pytest.approx(5e-3)


@pytest.mark.parametrize(
    ("field_name", "value", "message"),
    [
        ("lr_schedule", "exponential", "lr_schedule must be one of"),
        ("lr_warmup_steps", -1, "lr_warmup_steps must be >= 0"),
    ],
)
def test_bad_schedule_settings_are_refused(
    tmp_path: Path, field_name: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_config(tmp_path, "http://unused", **{field_name: value})


def test_each_optimizer_step_uses_the_scheduled_rate(server: LocalServer, tmp_path: Path) -> None:
    config = make_config(
        tmp_path / "run",
        server.url,
        lr_schedule="linear",
        max_steps=3,
        dataset_builder=UpperHalfDatasetBuilder(n_batches=5),
    )
    train.main(config)
    rows = train_rows(tmp_path / "run")
    expected = [1e-2 * (1 - step / 3) for step in range(3)]  # the run's end is max_steps, not the data's 5
    assert [row["optim/lr"] for row in rows] == pytest.approx(expected)
    # What the server's optimizer reports it applied.
    assert [row["optim/learning_rate"] for row in rows] == pytest.approx(expected, rel=1e-5)
