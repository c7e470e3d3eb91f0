"""save_checkpoint / checkpoints.jsonl / get_last_checkpoint.

The training client here is a recording fake: it isolates the boundary these helpers own (what is
asked of the client, and what is written to the index only after the saves succeeded). Saving
through the real server is covered by the integration tests of the training loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.client.errors import RequestFailedError
from cookbook.client.futures import APIFuture, ConcurrentAPIFuture, ResolvedFuture
from cookbook.utils.checkpoints import (
    CheckpointRecord,
    get_last_checkpoint,
    load_checkpoints_file,
    save_checkpoint,
    save_checkpoint_async,
)


class RecordingTrainingClient(TrainingClient):
    """Answers the two save calls (or fails them, or holds them until released); nothing else."""

    def __init__(self, fail: str | None = None, hold: bool = False):
        self.calls: list[tuple[str, str, int | None]] = []
        self.fail = fail
        self.pending: list[tuple[concurrent.futures.Future[Any], Any]] = []
        self.hold = hold

    def _answer(self, kind: str, value: Any) -> APIFuture[Any]:
        if self.fail == kind:
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            fut.set_exception(RequestFailedError(f"{kind} failed: disk full"))
            return ConcurrentAPIFuture(fut)
        if self.hold:
            fut = concurrent.futures.Future()
            self.pending.append((fut, value))
            return ConcurrentAPIFuture(fut)
        return ResolvedFuture(value)

    def release(self) -> None:
        for fut, value in self.pending:
            fut.set_result(value)

    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
    ) -> APIFuture[types.SaveWeightsResponse]:
        self.calls.append(("save_state", name, ttl_seconds))
        return self._answer("state", types.SaveWeightsResponse(path=f"tinker://run-1/weights/{name}"))

    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        self.calls.append(("save_weights_for_sampler", name, ttl_seconds))
        return self._answer(
            "sampler", types.SaveWeightsForSamplerResponse(path=f"tinker://run-1/sampler_weights/{name}")
        )

    @property
    def model_id(self) -> types.ModelID:
        return "run-1"

    async def forward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        raise NotImplementedError

    async def forward_backward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        raise NotImplementedError

    async def optim_step_async(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        raise NotImplementedError

    async def load_state_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        raise NotImplementedError

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        raise NotImplementedError

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        raise NotImplementedError

    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        raise NotImplementedError

    async def get_info_async(self) -> types.GetInfoResponse:
        raise NotImplementedError

    async def get_tokenizer_async(self) -> Any:
        raise NotImplementedError


def _lines(log_path: Path) -> list[dict[str, Any]]:
    path = log_path / "checkpoints.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_state_save_records_loop_state_and_path(tmp_path: Path) -> None:
    client = RecordingTrainingClient()
    paths = save_checkpoint(
        client, "000020", tmp_path, {"batch": 20, "epoch": 0, "elapsed_tokens": 1234}, ttl_seconds=3600
    )
    assert paths == {"state_path": "tinker://run-1/weights/000020"}
    assert client.calls == [("save_state", "000020", 3600)]
    assert _lines(tmp_path) == [
        {
            "name": "000020",
            "batch": 20,
            "epoch": 0,
            "elapsed_tokens": 1234,
            "state_path": "tinker://run-1/weights/000020",
        }
    ]


def test_both_kinds_and_final(tmp_path: Path) -> None:
    client = RecordingTrainingClient()
    paths = save_checkpoint(client, "final", tmp_path, {"batch": np.int64(37)}, kind="both")
    assert paths == {
        "state_path": "tinker://run-1/weights/final",
        "sampler_path": "tinker://run-1/sampler_weights/final",
    }
    assert [c[0] for c in client.calls] == ["save_state", "save_weights_for_sampler"]
    (record,) = load_checkpoints_file(tmp_path)
    assert record.final and record.batch == 37
    assert record.sampler_path == "tinker://run-1/sampler_weights/final"


def test_sampler_only(tmp_path: Path) -> None:
    client = RecordingTrainingClient()
    assert save_checkpoint(client, "s1", tmp_path, {"batch": 1}, kind="sampler") == {
        "sampler_path": "tinker://run-1/sampler_weights/s1"
    }
    assert get_last_checkpoint(tmp_path) is None  # no resumable state
    record = get_last_checkpoint(tmp_path, required_key="sampler_path")
    assert record is not None and record.name == "s1" and not record.final


def test_nothing_is_recorded_when_a_save_fails(tmp_path: Path) -> None:
    for failing in ("state", "sampler"):
        client = RecordingTrainingClient(fail=failing)
        with pytest.raises(RequestFailedError, match="disk full"):
            save_checkpoint(client, "000010", tmp_path, {"batch": 10}, kind="both")
        assert len(client.calls) == 2
    assert _lines(tmp_path) == []


def test_the_line_is_written_only_after_the_saves_finished(tmp_path: Path) -> None:
    client = RecordingTrainingClient(hold=True)
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(save_checkpoint(client, "x", tmp_path, {"batch": 3}, kind="both"))
    )
    worker.start()
    while len(client.pending) < 2 and worker.is_alive():
        worker.join(0.01)
    assert len(client.pending) == 2  # both saves were submitted before waiting on either
    assert _lines(tmp_path) == []
    client.release()
    worker.join()
    assert [line["name"] for line in _lines(tmp_path)] == ["x"]
    assert set(result) == {"state_path", "sampler_path"}


def test_async_save(tmp_path: Path) -> None:
    client = RecordingTrainingClient()
    paths = asyncio.run(
        save_checkpoint_async(client, "000005", tmp_path, {"batch": 5}, kind="both", ttl_seconds=60)
    )
    assert set(paths) == {"state_path", "sampler_path"}
    assert client.calls == [("save_state", "000005", 60), ("save_weights_for_sampler", "000005", 60)]
    record = get_last_checkpoint(tmp_path)
    assert record is not None and record.batch == 5


def test_async_save_records_nothing_on_failure(tmp_path: Path) -> None:
    client = RecordingTrainingClient(fail="sampler")
    with pytest.raises(RequestFailedError):
        asyncio.run(save_checkpoint_async(client, "a", tmp_path, {"batch": 1}, kind="both"))
    assert _lines(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "../escape"}, "invalid checkpoint name"),
        ({"name": ""}, "invalid checkpoint name"),
        ({"kind": "weights"}, "kind must be one of"),
        ({"ttl_seconds": 0}, "ttl_seconds must be a positive int"),
        ({"loop_state": {"batch": 1, "state_path": "x"}}, "loop_state may not set"),
        ({"loop_state": {"batch": "ten"}}, "'batch' must be an int"),
    ],
)
def test_bad_arguments_fail_before_any_save(tmp_path: Path, args: dict[str, Any], message: str) -> None:
    client = RecordingTrainingClient()
    call: dict[str, Any] = {"name": "ok", "loop_state": {"batch": 1}, **args}
    with pytest.raises(ValueError, match=message):
        save_checkpoint(client, log_path=tmp_path, **call)
    assert client.calls == []
    assert _lines(tmp_path) == []


def test_truncated_last_line_from_a_killed_run_is_ignored(tmp_path: Path) -> None:
    client = RecordingTrainingClient()
    save_checkpoint(client, "000010", tmp_path, {"batch": 10, "epoch": 0})
    with (tmp_path / "checkpoints.jsonl").open("a") as f:
        f.write('{"name": "000020", "batch": 20, "state_pa')  # killed mid-write
    record = get_last_checkpoint(tmp_path)
    assert record is not None and record.name == "000010"
    save_checkpoint(client, "000020", tmp_path, {"batch": 20, "epoch": 0})  # the resumed run saves again
    assert [r.name for r in load_checkpoints_file(tmp_path)] == ["000010", "000020"]


def test_records_keep_unknown_keys_and_round_trip(tmp_path: Path) -> None:
    line = {
        "name": "000040",
        "batch": 40,
        "epoch": 1,
        "state_path": "tinker://r/weights/000040",
        "data_seed": 7,
        "elapsed_seconds": 12.5,
    }
    (tmp_path / "checkpoints.jsonl").write_text(json.dumps(line) + "\n")
    (record,) = load_checkpoints_file(tmp_path)
    assert record.extra == {"data_seed": 7, "elapsed_seconds": 12.5}
    assert record.get("data_seed") == 7 and record.get("absent") is None
    assert record.to_dict() == line
    assert CheckpointRecord.from_dict(record.to_dict()) == record
    assert get_last_checkpoint(tmp_path, required_key="data_seed") == record


def test_last_checkpoint_skips_records_without_the_required_key(tmp_path: Path) -> None:
    client = RecordingTrainingClient()
    save_checkpoint(client, "000010", tmp_path, {"batch": 10}, kind="state")
    save_checkpoint(client, "000020", tmp_path, {"batch": 20}, kind="sampler")
    record = get_last_checkpoint(tmp_path)
    assert record is not None and record.name == "000010"
    record = get_last_checkpoint(tmp_path, required_key="sampler_path")
    assert record is not None and record.name == "000020"
    assert get_last_checkpoint(tmp_path / "no_such_run") is None


def test_a_corrupt_middle_line_or_record_is_reported(tmp_path: Path) -> None:
    (tmp_path / "checkpoints.jsonl").write_text('{"name": "a"}\n{"nam\n{"name": "b"}\n')
    with pytest.raises(ValueError, match=r"checkpoints\.jsonl:2"):
        load_checkpoints_file(tmp_path)
    (tmp_path / "checkpoints.jsonl").write_text('{"batch": 3}\n')
    with pytest.raises(ValueError, match="non-empty string 'name'"):
        load_checkpoints_file(tmp_path)
