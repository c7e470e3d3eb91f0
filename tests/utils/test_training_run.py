"""The run lifecycle every loop shares: the one finished-run rule, the resume point, the start checks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cookbook.client import types
from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.rl import train as rl_train
from cookbook.utils.jsonl import append_jsonl
from cookbook.utils.run import TrainingRun
from tests.rl.toy_env import UpperHalfDatasetBuilder


class ServerContacted(RuntimeError):
    """A fake service client was used: the run went on to train."""


class UntouchableService(ServiceClient):
    """Fails on first use, so that a test can tell a run that trains from one that returned."""

    async def create_training_client_async(
        self,
        base_model: str,
        lora_config: types.LoraConfig,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> TrainingClient:
        raise ServerContacted("create_training_client")

    async def create_sampling_client_async(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
    ) -> SamplingClient:
        raise ServerContacted("create_sampling_client")

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        raise ServerContacted("get_server_capabilities")

    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        raise ServerContacted(f"weights_info {path}")

    async def get_tokenizer_async(self, base_model: str) -> Any:
        raise ServerContacted("get_tokenizer")

    async def close_async(self) -> None:
        pass


def rl_config(tmp_path: Path, **overrides: Any) -> rl_train.Config:
    settings: dict[str, Any] = dict(
        log_path=str(tmp_path / "run"),
        model_name="tiny-llama",
        max_tokens=4,
        dataset_builder=UpperHalfDatasetBuilder(n_batches=8),
    )
    settings.update(overrides)
    return rl_train.Config(**settings)


def finished_run(config: rl_train.Config, at_step: int) -> TrainingRun:
    """The log dir of `config` holding a run that finished after `at_step` batches."""
    TrainingRun(config)
    append_jsonl(
        Path(config.log_path) / "checkpoints.jsonl",
        {"name": "final", "batch": at_step, "state_path": "tinker://r/weights/final", "final": True},
    )
    return TrainingRun(config, step_key="batch")


def test_a_finished_run_does_nothing_unless_its_steps_are_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(rl_config(tmp_path), at_step=4)
    assert run.last is not None and run.steps_done(run.last) == 4
    assert run.already_finished(None) is None  # the run's length is not known yet: nothing decided
    assert run.already_finished(4) is run.last and run.already_finished(3) is run.last
    assert "already finished at step 4" in capsys.readouterr().out
    assert run.already_finished(5) is None  # raised: it continues from its final state


def test_a_new_run_and_an_unfinished_one_have_training_to_do(tmp_path: Path) -> None:
    run = TrainingRun(rl_config(tmp_path), step_key="batch")
    assert run.last is None and run.already_finished(1) is None
    append_jsonl(
        tmp_path / "run" / "checkpoints.jsonl",
        {"name": "000004", "batch": 4, "state_path": "tinker://r/weights/000004"},
    )
    resumed = TrainingRun(rl_config(tmp_path), step_key="batch")
    assert resumed.last is not None and resumed.last.name == "000004" and resumed.already_finished(4) is None
    resumed.check_start(4, 4)
    with pytest.raises(ValueError, match="at step 4, past this run's 3 steps"):
        resumed.check_start(4, 3)


def test_the_rl_loop_continues_a_finished_run_only_when_max_steps_is_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished_run(rl_config(tmp_path, max_steps=4), at_step=4)
    record = asyncio.run(rl_train.main_async(rl_config(tmp_path, max_steps=4), UntouchableService()))
    assert (record.name, record.batch) == ("final", 4)
    assert "already finished at step 4" in capsys.readouterr().out
    # Raised: it goes on from the final state, whose model it checks first.
    with pytest.raises(ServerContacted, match="weights_info tinker://r/weights/final"):
        asyncio.run(rl_train.main_async(rl_config(tmp_path, max_steps=6), UntouchableService()))
