"""The optimizer config every loop nests: its schedule, its one warm-up rule, and per-loop defaults."""

from __future__ import annotations

import logging

import chz
import pytest

from cookbook.preference import train_dpo
from cookbook.rl import train as rl_train
from cookbook.supervised import train as supervised_train
from cookbook.supervised.data import FromConversationFileBuilder
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig
from cookbook.utils import optimizer_config
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from tests.rl.toy_env import UpperHalfDatasetBuilder


def test_the_rate_follows_the_schedule_after_the_warmup() -> None:
    optimizer = OptimizerConfig(learning_rate=1.0, lr_schedule="linear", lr_warmup_steps=2)
    assert [optimizer.lr_at(step, 6) for step in range(6)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    params = OptimizerConfig(
        learning_rate=2.0, lr_schedule="constant", adam_beta2=0.99, weight_decay=0.1, grad_clip_norm=1.0
    ).adam_params(3, 10)
    assert (params.learning_rate, params.beta1, params.beta2, params.eps) == (2.0, 0.9, 0.99, 1e-8)
    assert (params.weight_decay, params.grad_clip_norm) == (0.1, 1.0)


def test_a_warmup_longer_than_the_run_is_cut_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    optimizer_config._warn_warmup_cut.cache_clear()  # it warns once per process for each run length
    optimizer = OptimizerConfig(learning_rate=1.0, lr_schedule="linear", lr_warmup_steps=10)
    with caplog.at_level(logging.WARNING):
        rates = [optimizer.lr_at(step, 4) for step in range(4)]
    assert optimizer.warmup_steps_for(4) == 3 and optimizer.warmup_steps_for(20) == 10
    assert rates == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])  # 3 warm-up steps, then one step of decay
    warnings = [r.getMessage() for r in caplog.records if "lr_warmup_steps" in r.getMessage()]
    assert warnings == ["lr_warmup_steps=10 does not fit in 4 steps; warming up for 3"]
    assert OptimizerConfig(lr_warmup_steps=10).lr_at(0, 1) == pytest.approx(
        1e-4
    )  # a one-step run: no warm-up


@pytest.mark.parametrize(
    ("field_name", "value", "message"),
    [
        ("learning_rate", 0.0, "learning_rate must be positive"),
        ("lr_schedule", "exponential", "lr_schedule must be one of"),
        ("lr_warmup_steps", -1, "lr_warmup_steps must be >= 0"),
    ],
)
def test_bad_settings_are_refused(field_name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**{field_name: value})


@chz.chz
class _Loop:
    optimizer: OptimizerConfig = optimizer_defaults(learning_rate=1e-5, lr_schedule="cosine")


def test_a_loops_defaults_survive_setting_one_field_on_the_command_line() -> None:
    assert _Loop().optimizer == OptimizerConfig(learning_rate=1e-5, lr_schedule="cosine")
    loop = chz.entrypoint(_Loop, argv=["optimizer.lr_warmup_steps=5"])
    assert loop.optimizer == OptimizerConfig(learning_rate=1e-5, lr_schedule="cosine", lr_warmup_steps=5)


def test_each_loop_keeps_its_defaults() -> None:
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer="tiny-llama", renderer_name="role_colon", max_length=None, batch_size=2
    )
    chats = FromConversationFileBuilder(common_config=common, file_path="never-read.jsonl")
    run = {"log_path": "/nonexistent/run", "model_name": "tiny-llama"}
    sft = supervised_train.Config(**run, dataset_builder=chats)
    dpo = train_dpo.Config(**run, dataset_builder=chats)
    rl = rl_train.Config(**run, dataset_builder=UpperHalfDatasetBuilder(n_batches=1), max_tokens=4)
    assert sft.optimizer == OptimizerConfig(learning_rate=1e-4, lr_schedule="linear")
    assert dpo.optimizer == OptimizerConfig(learning_rate=1e-5, lr_schedule="linear")
    assert rl.optimizer == OptimizerConfig(learning_rate=1e-4, lr_schedule="constant")
    assert (sft.eval_every, dpo.eval_every, rl.eval_every) == (10, 10, 20)
