"""Bookkeeping of the SFT loop (steps, pipelining order, checkpoints, resume) without a server.

The fakes below stand in for the server side of the boundary only: they record the order in
which the loop submits calls and reads results, which batches each model actually trained on,
and what each checkpoint holds. The real path (HTTP + PyTorch server) is tested in
test_train_integration.py and tests/recipes/test_sl_basic_resume.py.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chz
import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.client.futures import APIFuture
from cookbook.supervised import train
from cookbook.supervised.types import SupervisedDataset, SupervisedDatasetBuilder
from cookbook.utils.checkpoints import CheckpointRecord, load_checkpoints_file
from cookbook.utils.jsonl import read_jsonl
from cookbook.utils.run_dir import RunDirError
from tests.loop_configs import make_loop_config


class CrashError(RuntimeError):
    """The simulated process death."""


class RecordingFuture(APIFuture[Any]):
    """A resolved value whose first read is appended to the event log."""

    def __init__(self, value: Any, events: list[tuple[str, Any]], label: tuple[str, Any]):
        self._value, self._events, self._label, self._read = value, events, label, False

    def _note_read(self) -> Any:
        if not self._read:
            self._read = True
            self._events.append(("read", self._label))
        return self._value

    def result(self, timeout: float | None = None) -> Any:
        return self._note_read()

    async def result_async(self, timeout: float | None = None) -> Any:
        return self._note_read()

    def done(self) -> bool:
        return True


@dataclass
class FakeState:
    """A model's 'weights': the batches it was trained on, in order, and its optimizer step count."""

    trained: list[int] = field(default_factory=list)
    optim_steps: int = 0


class FakeServer:
    """Shared storage of checkpoints and the event log, like one server seen by several clients."""

    def __init__(self, crash_at_fwd_bwd: int | None = None):
        self.events: list[tuple[str, Any]] = []
        self.checkpoints: dict[str, FakeState] = {}
        self.models: list[FakeTrainingClient] = []
        self.crash_at_fwd_bwd = crash_at_fwd_bwd
        self.fwd_bwd_calls = 0


class FakeTrainingClient(TrainingClient):
    """Logprobs are -1/(1 + optimizer steps) per token, so the loss falls as it 'trains'."""

    def __init__(self, server: FakeServer, model_id: str, lora_config: types.LoraConfig):
        self.server, self._model_id, self.lora_config = server, model_id, lora_config
        self.state = FakeState()
        self.pending: list[int] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    def _future(self, value: Any, label: tuple[str, Any]) -> RecordingFuture:
        return RecordingFuture(value, self.server.events, label)

    def _output(self, data: list[types.Datum]) -> types.ForwardBackwardOutput:
        logprob = -1.0 / (1 + self.state.optim_steps)
        outputs = [
            {
                "logprobs": types.TensorData.from_numpy(
                    np.full(len(d.loss_fn_inputs["target_tokens"].data), logprob, dtype=np.float32)
                )
            }
            for d in data
        ]
        return types.ForwardBackwardOutput(loss_fn_outputs=outputs, metrics={"loss:sum": 1.0})

    async def forward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        self.server.events.append(("forward", len(data)))
        return self._future(self._output(data), ("forward", len(data)))

    async def forward_backward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: dict[str, float] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        self.server.fwd_bwd_calls += 1
        if (
            self.server.crash_at_fwd_bwd is not None
            and self.server.fwd_bwd_calls == self.server.crash_at_fwd_bwd
        ):
            raise CrashError(f"simulated crash at forward_backward call {self.server.fwd_bwd_calls}")
        batch_id = batch_id_of(data)
        self.pending.append(batch_id)
        self.server.events.append(("fwd_bwd", batch_id))
        return self._future(self._output(data), ("fwd_bwd", batch_id))

    async def optim_step_async(self, adam_params: types.AdamParams) -> APIFuture[types.OptimStepResponse]:
        self.state.trained.extend(self.pending)
        self.pending = []
        self.state.optim_steps += 1
        self.server.events.append(("optim", adam_params.learning_rate))
        return self._future(
            types.OptimStepResponse(metrics={"grad_norm": 2.0}), ("optim", self.state.optim_steps)
        )

    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
    ) -> APIFuture[types.SaveWeightsResponse]:
        path = f"tinker://{self._model_id}/weights/{name}"
        self.server.checkpoints[path] = FakeState(list(self.state.trained), self.state.optim_steps)
        self.server.events.append(("save", name))
        return self._future(types.SaveWeightsResponse(path=path), ("save", name))

    def _load(self, path: str, optimizer: bool) -> APIFuture[types.LoadWeightsResponse]:
        saved = self.server.checkpoints[path]
        self.state = FakeState(list(saved.trained), saved.optim_steps if optimizer else 0)
        return self._future(types.LoadWeightsResponse(path=path), ("load", path))

    async def load_state_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=False)

    async def load_state_with_optimizer_async(self, path: str) -> APIFuture[types.LoadWeightsResponse]:
        return self._load(path, optimizer=True)

    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        path = f"tinker://{self._model_id}/sampler_weights/{name}"
        self.server.events.append(("save_sampler", name))
        return self._future(types.SaveWeightsForSamplerResponse(path=path), ("save_sampler", name))

    async def save_weights_and_get_sampling_client_async(self, name: str | None = None) -> SamplingClient:
        raise NotImplementedError("the SFT bookkeeping tests do not sample")

    async def create_sampling_client_async(self, model_path: str) -> SamplingClient:
        raise NotImplementedError("the SFT bookkeeping tests do not sample")

    async def get_info_async(self) -> types.GetInfoResponse:
        return types.GetInfoResponse(model_data=types.ModelData(model_name="fake"), model_id=self._model_id)

    async def get_tokenizer_async(self) -> Any:
        raise NotImplementedError("the SFT bookkeeping tests do not tokenize")


class FakeServiceClient(ServiceClient):
    def __init__(self, server: FakeServer):
        self.server = server
        self.closed = False

    async def create_training_client_async(
        self,
        base_model: str,
        lora_config: types.LoraConfig,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> TrainingClient:
        client = FakeTrainingClient(self.server, f"run{len(self.server.models)}", lora_config)
        self.server.models.append(client)
        return client

    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        if path not in self.server.checkpoints:
            raise KeyError(path)
        return types.WeightsInfoResponse(base_model="fake", is_lora=False)

    async def create_sampling_client_async(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
    ) -> SamplingClient:
        raise NotImplementedError

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return types.GetServerCapabilitiesResponse(supported_models=[types.SupportedModel(model_name="fake")])

    async def get_tokenizer_async(self, base_model: str) -> Any:
        raise NotImplementedError

    async def close_async(self) -> None:
        self.closed = True


def batch_id_of(data: list[types.Datum]) -> int:
    """Each fake row's first token is its id; a batch is named by its first row."""
    return data[0].model_input.to_ints()[0]


FIRST_ROW_ID = 1000


class RowsDataset(SupervisedDataset):
    """`n_rows` rows in batches of `batch_size`, reordered per epoch with the epoch as seed."""

    def __init__(self, n_rows: int, batch_size: int):
        self.rows = list(range(FIRST_ROW_ID, FIRST_ROW_ID + n_rows))
        self.order = list(self.rows)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.rows) // self.batch_size

    def set_epoch(self, seed: int = 0) -> None:
        self.order = list(self.rows)
        random.Random(seed).shuffle(self.order)

    def get_batch(self, index: int) -> list[types.Datum]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return [
            types.Datum(
                model_input=types.ModelInput.from_ints([row, 5, 6]),
                loss_fn_inputs={"target_tokens": [5, 6, 7], "weights": [0.5, 0.5, 0.0]},
            )
            for row in rows
        ]


@chz.chz
class RowsBuilder(SupervisedDatasetBuilder):
    n_rows: int = 12
    batch_size: int = 2
    n_test_rows: int = 3

    def __call__(self) -> tuple[SupervisedDataset, SupervisedDataset | None]:
        test = RowsDataset(self.n_test_rows, self.n_test_rows) if self.n_test_rows else None
        return RowsDataset(self.n_rows, self.batch_size), test


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def make_config(tmp_path: Path, **overrides: Any) -> train.Config:
    settings: dict[str, Any] = dict(
        log_path=str(tmp_path / "run"),
        model_name="fake",
        dataset_builder=RowsBuilder(),
        lora_rank=0,
        learning_rate=1e-3,
        num_epochs=2,
        save_every=4,
        eval_every=3,
    )
    settings.update(overrides)
    return make_loop_config(train.Config, **settings)


def run(config: train.Config, server: FakeServer) -> CheckpointRecord:
    return asyncio.run(train.main_async(config, FakeServiceClient(server)))


def test_steps_and_data_positions() -> None:
    assert train.total_training_steps(6, 2, None) == 12
    assert train.total_training_steps(6, 2, 5) == 5
    assert train.total_training_steps(6, 2, 50) == 12
    with pytest.raises(ValueError, match="no complete batch"):
        train.total_training_steps(0, 1, None)
    assert train.position_of_step(7, 6) == (1, 1)
    assert train.loop_state(12, 6) == {"epoch": 2, "batch": 0, "step": 12}
    assert train.checkpoint_name(40) == "000040"


def test_resume_step_refuses_a_record_that_no_longer_fits_the_data() -> None:
    record = CheckpointRecord(name="000008", epoch=1, batch=2, extra={"step": 8})
    assert train.resume_step(record, 6) == 8
    with pytest.raises(ValueError, match="data or batch size changed"):
        train.resume_step(record, 5)
    with pytest.raises(ValueError, match="batch 7 of an epoch"):
        train.resume_step(CheckpointRecord(name="x", epoch=0, batch=7), 6)
    with pytest.raises(ValueError, match="no 'epoch'/'batch'"):
        train.resume_step(CheckpointRecord(name="x", batch=3), 6)


def test_batch_metrics_weight_the_nll_by_the_datum_weights() -> None:
    data = RowsDataset(2, 2).get_batch(0)
    lp = [
        types.TensorData.from_numpy(np.array(v, dtype=np.float32))
        for v in ([-1.0, -3.0, -9.0], [-2.0, -2.0, -5.0])
    ]
    output = types.ForwardBackwardOutput(loss_fn_outputs=[{"logprobs": x} for x in lp])
    metrics = train.batch_metrics(data, output)
    # weights (0.5, 0.5, 0): the third token of each datum does not count
    assert metrics == {
        "train_mean_nll": pytest.approx((0.5 + 1.5 + 1.0 + 1.0) / 2.0),
        "num_sequences": 2,
        "num_tokens": 6,
        "num_loss_tokens": 4,
    }
    with pytest.raises(ValueError, match="1 outputs for 2 datums"):
        train.batch_metrics(data, types.ForwardBackwardOutput(loss_fn_outputs=[{"logprobs": lp[0]}]))


@pytest.mark.parametrize(
    ("field_name", "value", "message"),
    [
        ("lr_schedule", "exponential", "lr_schedule must be one of"),
        ("submit_ahead", -1, "submit_ahead must be at least 0"),
        ("max_steps", 0, "max_steps must be at least 1"),
        ("num_epochs", 0, "num_epochs must be at least 1"),
        ("behavior_if_log_dir_exists", "ask", "behavior_if_log_dir_exists must be one of"),
        ("learning_rate", 0.0, "learning_rate must be positive"),
    ],
)
def test_config_rejects_bad_values(tmp_path: Path, field_name: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config(tmp_path, **{field_name: value})


@pytest.mark.parametrize("submit_ahead", [0, 1, 2])
def test_results_are_read_only_after_submit_ahead_more_steps_were_submitted(
    tmp_path: Path, submit_ahead: int
) -> None:
    server = FakeServer()
    run(make_config(tmp_path, submit_ahead=submit_ahead), server)
    submitted, submitted_when_read = 0, []
    for kind, what in server.events:
        if kind == "fwd_bwd":
            submitted += 1
        elif kind == "read" and what[0] == "fwd_bwd":
            submitted_when_read.append(submitted)
    total = 12
    assert submitted_when_read == [min(k + 1 + submit_ahead, total) for k in range(total)]


def test_checkpoint_for_step_s_is_taken_before_batch_s_and_recorded_with_its_position(tmp_path: Path) -> None:
    server = FakeServer()
    config = make_config(tmp_path)
    final = run(config, server)

    kinds = [kind if kind != "save" else f"save {what}" for kind, what in server.events if kind != "read"]
    training_calls = [k for k in kinds if k in ("fwd_bwd", "optim") or k.startswith("save")]
    assert training_calls.index("save 000004") == 2 * 4  # after 4 (fwd_bwd, optim) pairs, before the 5th
    assert training_calls.index("save 000008") == 2 * 8 + 1  # the save of 000004 came before
    records = load_checkpoints_file(config.log_path)
    assert [(r.name, r.epoch, r.batch, r.extra["step"]) for r in records] == [
        ("000004", 0, 4, 4),
        ("000008", 1, 2, 8),
        ("final", 2, 0, 12),
    ]
    assert (
        records[-1].final
        and records[-1].sampler_path is not None
        and final.state_path == records[-1].state_path
    )
    trained = server.models[0].state.trained
    assert len(trained) == 12
    for record in records:
        assert server.checkpoints[record.state_path].trained == trained[: record.extra["step"]]


def test_a_crashed_run_resumes_without_training_any_batch_twice_or_skipping_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uninterrupted = FakeServer()
    run(make_config(tmp_path / "a"), uninterrupted)
    expected = uninterrupted.models[0].state.trained

    server = FakeServer(crash_at_fwd_bwd=8)  # step 7: checkpoint 000004 recorded, 000008 not yet taken
    config = make_config(tmp_path / "b")
    with pytest.raises(CrashError):
        run(config, server)
    assert [r.name for r in load_checkpoints_file(config.log_path)] == ["000004"]
    rows_before = read_jsonl(Path(config.log_path) / "metrics.jsonl")

    server.crash_at_fwd_bwd = None
    run(config, server)
    resumed = server.models[-1]
    assert len(server.models) == 2
    assert resumed.state.trained == expected
    assert resumed.state.optim_steps == 12  # the Adam step count came back with the checkpoint
    rows_after = read_jsonl(Path(config.log_path) / "metrics.jsonl")
    kept = [r for r in rows_before if r["step"] < 4]  # the dead run's rows from the resume point on are gone
    assert rows_after[: len(kept)] == kept
    new_rows = rows_after[len(kept) :]
    assert new_rows[0]["step"] == 4
    assert [r["step"] for r in new_rows if "train_mean_nll" in r] == list(range(4, 12))
    assert "data changed" not in caplog.text


def test_resuming_onto_changed_data_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeServer(crash_at_fwd_bwd=8)
    config = make_config(tmp_path)
    with pytest.raises(CrashError):
        run(config, server)
    record = load_checkpoints_file(config.log_path)[-1]
    dataset = RowsDataset(12, 2)
    dataset.set_epoch(0)
    assert record.extra["batch_fingerprint"] == train.batch_fingerprint(dataset.get_batch(4))

    server.crash_at_fwd_bwd = None
    monkeypatch.setattr(sys.modules[__name__], "FIRST_ROW_ID", 5000)  # same config, other rows
    run(config, server)
    assert "the data changed since checkpoint '000004'" in caplog.text


def test_rerunning_a_finished_run_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer()
    config = make_config(tmp_path)
    first = run(config, server)
    metrics_before = (Path(config.log_path) / "metrics.jsonl").read_bytes()
    capsys.readouterr()

    again = run(config, server)
    assert again.state_path == first.state_path
    assert len(server.models) == 1
    assert (Path(config.log_path) / "metrics.jsonl").read_bytes() == metrics_before
    assert "already finished" in capsys.readouterr().out


def test_a_log_path_holding_another_run_is_refused_unless_overwritten(tmp_path: Path) -> None:
    server = FakeServer()
    run(make_config(tmp_path, learning_rate=1e-3), server)
    with pytest.raises(RunDirError, match="learning_rate"):
        run(make_config(tmp_path, learning_rate=2e-3), server)
    assert len(server.models) == 1
    run(make_config(tmp_path, learning_rate=2e-3, behavior_if_log_dir_exists="overwrite"), server)
    assert len(server.models) == 2
    records = load_checkpoints_file(tmp_path / "run")  # only the new run's: the old records are gone
    assert [r.name for r in records] == ["000004", "000008", "final"]
    assert all(r.state_path is not None and r.state_path.startswith("tinker://run1/") for r in records)


def test_metrics_schedule_and_artifacts(tmp_path: Path) -> None:
    server = FakeServer()
    config = make_config(tmp_path, lr_schedule="linear", lr_warmup_steps=2, max_steps=10)
    run(config, server)
    rows = read_jsonl(Path(config.log_path) / "metrics.jsonl")
    steps = [r for r in rows if "train_mean_nll" in r]
    assert [r["step"] for r in steps] == list(range(10))
    for row in steps:
        for key in (
            "learning_rate",
            "num_sequences",
            "num_tokens",
            "num_loss_tokens",
            "epoch",
            "progress",
            "time/total",
            "time/get_batch",
            "optim/grad_norm",
        ):
            assert key in row, key
    assert [r["learning_rate"] for r in steps[:3]] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert steps[-1]["learning_rate"] == pytest.approx(1e-3 / 8)  # linear decay over the 8 steps after warmup
    assert steps[-1]["progress"] == 1.0 and steps[6]["epoch"] == 1
    assert steps[0]["train_mean_nll"] > steps[-1]["train_mean_nll"]
    evals = {r["step"]: r["test/nll"] for r in rows if "test/nll" in r}
    assert sorted(evals) == [0, 3, 6, 9, 10]  # every eval_every steps, and at the end
    assert evals[10] < evals[0]
    assert (Path(config.log_path) / "config.json").exists()
    assert (Path(config.log_path) / "metrics.png").stat().st_size > 0


def test_an_evaluation_is_queued_before_its_step_and_read_after_that_step_was_submitted(
    tmp_path: Path,
) -> None:
    server = FakeServer()
    config = make_config(tmp_path, max_steps=10)
    run(config, server)
    events = server.events
    queued = [i for i, event in enumerate(events) if event[0] == "forward"]
    assert len(queued) == 5  # steps 0, 3, 6, 9 and the final evaluation
    for i in queued[:-1]:
        assert events[i + 1][0] == "fwd_bwd"  # the step's batch goes right behind its evaluation
        assert events[i + 2][0] == "optim"  # and is submitted before the evaluation is read
    assert [event for event in events if event[0] == "read" and event[1][0] == "forward"] == [
        ("read", ("forward", 3))
    ] * 5
    rows = read_jsonl(Path(config.log_path) / "metrics.jsonl")
    evals = {r["step"]: r["test/nll"] for r in rows if "test/nll" in r}
    # The fake's logprob is -1/(1 + optimizer steps): each evaluation saw exactly its step's updates.
    assert evals == pytest.approx({s: 1.0 / (1 + s) for s in (0, 3, 6, 9, 10)})


def test_load_checkpoint_path_initialises_weights_only(tmp_path: Path) -> None:
    server = FakeServer()
    server.checkpoints["tinker://previous/weights/final"] = FakeState(trained=[7, 7, 7], optim_steps=30)
    run(make_config(tmp_path, load_checkpoint_path="tinker://previous/weights/final", max_steps=2), server)
    model = server.models[0]
    assert model.state.trained[:3] == [7, 7, 7] and len(model.state.trained) == 5
    assert model.state.optim_steps == 2  # a fresh optimizer


def test_a_finished_run_continues_from_its_final_state_when_max_steps_is_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uninterrupted = FakeServer()
    run(make_config(tmp_path / "a", max_steps=8), uninterrupted)

    server = FakeServer()
    config = make_config(tmp_path / "b", max_steps=5)
    first = run(config, server)
    assert run(config, server) == first and len(server.models) == 1  # not raised: nothing to do
    assert "already finished at step 5" in capsys.readouterr().out

    final = run(make_config(tmp_path / "b", max_steps=8), server)
    continued = server.models[-1]
    assert len(server.models) == 2
    assert continued.state.trained == uninterrupted.models[0].state.trained
    assert continued.state.optim_steps == 8  # the Adam state came back from the final checkpoint
    assert (final.name, final.extra["step"], final.epoch, final.batch) == ("final", 8, 1, 2)
    steps = [r["step"] for r in read_jsonl(Path(config.log_path) / "metrics.jsonl") if "train_mean_nll" in r]
    assert steps == [0, 1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora_rank": 8}, r"lora_rank=0, but the config says model_name='fake', lora_rank=8"),
        ({"model_name": "other"}, r"holds a 'fake' model .* model_name='other'"),
    ],
)
def test_load_checkpoint_path_must_hold_the_configs_model_and_lora_rank(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    server = FakeServer()
    server.checkpoints["tinker://previous/weights/final"] = FakeState(trained=[7], optim_steps=1)
    config = make_config(
        tmp_path, load_checkpoint_path="tinker://previous/weights/final", max_steps=2, **overrides
    )
    with pytest.raises(ValueError, match=message):
        run(config, server)
    assert server.models == []
