"""The supervised fine-tuning loop: pipelined steps, periodic evaluation, exact resume.

Each step submits `forward_backward("cross_entropy")` and `optim_step` for one batch and reads
their results only after the next `submit_ahead` steps were submitted, so the server always has
queued work. Because a training client runs its calls in order, everything else the loop does
is just another call in that stream and needs no draining:

- the checkpoint for step s (weights after s updates) is submitted *before* batch s, and its
  `checkpoints.jsonl` record, holding the data position of batch s, is written once the save
  succeeded; resuming from it therefore trains batch s next, with no batch trained twice or
  skipped (Tinker's cookbook saves after submitting ahead and replays batches on resume);
- evaluations at step s (`forward` over the test set) queue behind the submitted updates and
  see exactly s of them; they are submitted before batch s and read with its results, so the
  server computes them without the loop draining its queue.

Setup, resume (weights, Adam state, data position, step), the finished-run rule, the client
and logging are `TrainingRun`'s (cookbook/utils/run.py), the same for every loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import chz
import numpy as np

from cookbook.client.abstract import ServiceClient, TrainingClient
from cookbook.client.futures import APIFuture
from cookbook.client.types import (
    Datum,
    ForwardBackwardOutput,
    OptimStepResponse,
    SaveWeightsResponse,
)
from cookbook.eval.evaluators import Evaluator
from cookbook.eval.run import PendingEvaluation, build_evaluators, run_evaluators, submit_evaluators
from cookbook.supervised.common import compute_mean_nll
from cookbook.supervised.loop_config import SupervisedRunConfig
from cookbook.supervised.nll_evaluator import NLLEvaluator
from cookbook.supervised.types import SupervisedDataset
from cookbook.utils.checkpoints import (
    FINAL_NAME,
    CheckpointRecord,
    checkpoints_path,
    save_checkpoint_async,
)
from cookbook.utils.jsonl import append_jsonl
from cookbook.utils.progress import TrainingProgress
from cookbook.utils.run import TrainingRun
from cookbook.utils.run_config import check_at_least
from cookbook.utils.timing import StepClock, timed

logger = logging.getLogger(__name__)


@chz.chz
class Config(SupervisedRunConfig):
    """Everything one supervised run needs (the shared fields are `SupervisedRunConfig`'s)."""

    submit_ahead: int = 1  # steps submitted before the oldest one's results are read

    @chz.validate
    def _check(self) -> None:
        check_at_least(self, {"submit_ahead": 0})


# ---------------------------------------------------------------------------------------------
# Bookkeeping: steps, data positions, resume points, per-step metrics
# ---------------------------------------------------------------------------------------------


def total_training_steps(n_batches: int, num_epochs: int, max_steps: int | None) -> int:
    """Steps of the whole run: every batch of every epoch, capped by `max_steps`."""
    if n_batches < 1:
        raise ValueError("the training set has no complete batch: add data or lower the batch size")
    total = n_batches * num_epochs
    return total if max_steps is None else min(total, max_steps)


def position_of_step(step: int, n_batches: int) -> tuple[int, int]:
    """(epoch, batch index within the epoch) that step `step` trains on."""
    return divmod(step, n_batches)


def loop_state(step: int, n_batches: int) -> dict[str, int]:
    """What a checkpoint taken before step `step` records: the next batch to train, and the step."""
    epoch, batch = position_of_step(step, n_batches)
    return {"epoch": epoch, "batch": batch, "step": step}


def resume_step(record: CheckpointRecord, n_batches: int) -> int:
    """The step to continue at from `record`; refuses a record that no longer fits the data."""
    if record.epoch is None or record.batch is None:
        raise ValueError(
            f"checkpoint {record.name!r} has no 'epoch'/'batch' position; it was not "
            "written by this loop and cannot be resumed"
        )
    if not 0 <= record.batch < n_batches:
        raise ValueError(
            f"checkpoint {record.name!r} is at batch {record.batch} of an epoch, but the "
            f"training set now has {n_batches} batches: the data or batch size changed"
        )
    step = record.epoch * n_batches + record.batch
    recorded = record.extra.get("step")
    if recorded is not None and recorded != step:
        raise ValueError(
            f"checkpoint {record.name!r} was taken at step {recorded} (epoch {record.epoch}, "
            f"batch {record.batch}), which means {step} with {n_batches} batches per epoch: "
            "the data or batch size changed"
        )
    return step


@dataclass
class EpochPlan:
    """What a run over epochs of a supervised dataset trains in this invocation."""

    train_set: SupervisedDataset
    test_set: SupervisedDataset | None
    start_step: int
    total_steps: int

    def describe(self, what: str, model_name: str) -> str:
        return (
            f"{what} on {model_name}: steps {self.start_step}..{self.total_steps - 1} of "
            f"{self.total_steps} ({len(self.train_set)} batches per epoch)"
        )


def plan_epochs(run: TrainingRun, config: SupervisedRunConfig) -> EpochPlan | CheckpointRecord:
    """The data and step range of `run` (SFT and DPO alike), or its final record when it has nothing to do.

    The finished-run rule is asked twice: first before the data is built (a finished run needs none),
    then against the run's real length (max_steps may exceed the data).
    """
    if (done := run.already_finished(config.max_steps)) is not None:
        return done
    train_set, test_set = config.dataset_builder()
    total_steps = total_training_steps(len(train_set), config.num_epochs, config.max_steps)
    if (done := run.already_finished(total_steps)) is not None:
        return done
    start_step = resume_step(run.last, len(train_set)) if run.last is not None else 0
    run.check_start(start_step, total_steps)
    return EpochPlan(train_set, test_set, start_step, total_steps)


def checkpoint_name(step: int) -> str:
    return f"{step:06d}"


def batch_fingerprint(data: list[Datum]) -> str:
    """A short hash of a batch's tokens and weights.

    Checkpoints record the fingerprint of the batch they are to train next, so that a resume
    can tell when the data changed underneath the run (same config, different rows or order).
    """
    digest = hashlib.sha256()
    for datum in data:
        digest.update(np.asarray(datum.model_input.to_ints(), dtype=np.int64).tobytes())
        digest.update(datum.loss_fn_inputs["weights"].to_numpy().astype(np.float32).tobytes())
    return digest.hexdigest()[:16]


def batch_metrics(data: list[Datum], output: ForwardBackwardOutput) -> dict[str, float | int]:
    """`train_mean_nll` and the batch's size in sequences, tokens and trained tokens."""
    if len(output.loss_fn_outputs) != len(data):
        raise ValueError(
            f"forward_backward returned {len(output.loss_fn_outputs)} outputs for {len(data)} datums"
        )
    weights = [datum.loss_fn_inputs["weights"] for datum in data]
    logprobs = [out["logprobs"] for out in output.loss_fn_outputs]
    return {
        "train_mean_nll": compute_mean_nll(logprobs, weights),
        "num_sequences": len(data),
        "num_tokens": sum(datum.model_input.length for datum in data),
        "num_loss_tokens": int(sum((w.to_numpy() != 0).sum() for w in weights)),
    }


def optim_metrics(response: OptimStepResponse) -> dict[str, float]:
    """The server's optimizer metrics (grad norm, ...) under `optim/`."""
    return {f"optim/{key}": value for key, value in (response.metrics or {}).items()}


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@dataclass
class _PendingSave:
    """A checkpoint submitted before some step; recorded in checkpoints.jsonl once it exists."""

    name: str
    future: APIFuture[SaveWeightsResponse]
    state: dict[str, Any]


@dataclass
class _InFlightStep:
    step: int
    epoch: int
    data: list[Datum]
    learning_rate: float
    fwd_bwd: APIFuture[ForwardBackwardOutput]
    optim: APIFuture[OptimStepResponse]
    clock: StepClock
    metrics: dict[str, Any] = field(default_factory=dict)
    save: _PendingSave | None = None
    evaluation: PendingEvaluation | None = None  # queued before this step's calls


class EpochLoop:
    """One invocation of a loop over an `EpochPlan`, from `start_step` to `total_steps` (SFT, DPO, RM).

    It holds the run, the client, the plan and the evaluators, fetches a step's batch (reshuffling
    at each epoch's start), runs the evaluators and writes the final checkpoint.
    """

    def __init__(
        self,
        config: SupervisedRunConfig,
        run: TrainingRun,
        client: TrainingClient,
        plan: EpochPlan,
        evaluators: list[Evaluator],
    ):
        self.config = config
        self.run = run
        self.client = client
        self.train_set = plan.train_set
        self.n_batches = len(plan.train_set)
        self.evaluators = evaluators
        self.start_step = plan.start_step
        self.total_steps = plan.total_steps

    def batch_of(self, step: int) -> list[Datum]:
        """Step `step`'s batch; called once per step, in step order (a new epoch reshuffles the set)."""
        epoch, batch_index = position_of_step(step, self.n_batches)
        if batch_index == 0 or step == self.start_step:
            self.train_set.set_epoch(epoch)
        return self.train_set.get_batch(batch_index)

    async def evaluate(self, metrics: dict[str, Any]) -> None:
        """Run every evaluator on the current weights, adding their metrics and time to `metrics`."""
        with timed("evals", metrics):
            metrics.update(await run_evaluators(self.evaluators, self.client))

    async def finish(self) -> CheckpointRecord:
        """The last evaluation (logged at `total_steps`) and the "final" checkpoint, whose record it returns."""
        if self.evaluators:
            metrics: dict[str, Any] = {}
            await self.evaluate(metrics)
            self.run.log(metrics, step=self.total_steps)
        state = loop_state(self.total_steps, self.n_batches)
        paths = await save_checkpoint_async(self.client, FINAL_NAME, self.config.log_path, state, kind="both")
        return CheckpointRecord.from_dict({"name": FINAL_NAME, **state, **paths})


class _SupervisedRun(EpochLoop):
    """The SFT loop: pipelined steps, each checkpoint recording its next batch's fingerprint."""

    config: Config

    def __init__(
        self,
        config: Config,
        run: TrainingRun,
        training_client: TrainingClient,
        plan: EpochPlan,
        evaluators: list[Evaluator],
    ):
        super().__init__(config, run, training_client, plan, evaluators)
        self.resumed_from = run.last

    async def train(self) -> CheckpointRecord:
        in_flight: deque[_InFlightStep] = deque()
        with TrainingProgress(self.total_steps, initial_step=self.start_step, desc="sft") as progress:
            for step in range(self.start_step, self.total_steps):
                in_flight.append(await self._submit_step(step))
                while len(in_flight) > self.config.submit_ahead:
                    await self._finish_step(in_flight.popleft(), progress)
            while in_flight:
                await self._finish_step(in_flight.popleft(), progress)
        return await self.finish()

    async def _submit_step(self, step: int) -> _InFlightStep:
        """Everything that must happen before batch `step` trains, then its two calls."""
        clock = StepClock()
        metrics: dict[str, Any] = {}
        epoch, _ = position_of_step(step, self.n_batches)
        with timed("get_batch", metrics):
            data = self.batch_of(step)
        if step == self.start_step:
            self._check_resumed_data(data)
        save = self._maybe_save(step, data)
        evaluation = None
        if self.evaluators and self.config.eval_every > 0 and step % self.config.eval_every == 0:
            with timed("evals", metrics):
                evaluation = await submit_evaluators(self.evaluators, self.client)
        adam_params = self.config.optimizer.adam_params(step, self.total_steps)
        with timed("submit", metrics):
            fwd_bwd = await self.client.forward_backward_async(data, "cross_entropy")
            optim = await self.client.optim_step_async(adam_params)
        return _InFlightStep(
            step, epoch, data, adam_params.learning_rate, fwd_bwd, optim, clock, metrics, save, evaluation
        )

    def _check_resumed_data(self, data: list[Datum]) -> None:
        """Warn when the batch to resume with is not the one the checkpoint was taken before."""
        recorded = self.resumed_from.extra.get("batch_fingerprint") if self.resumed_from is not None else None
        if recorded is not None and recorded != batch_fingerprint(data):
            logger.warning(
                "the data changed since checkpoint %r was saved: its next batch (epoch %s, batch %s) now has "
                "different tokens, so this resumed run will not repeat the original one (were the dataset, "
                "its files or its rendering changed?); continuing anyway",
                self.resumed_from.name,
                self.resumed_from.epoch,
                self.resumed_from.batch,
            )

    def _maybe_save(self, step: int, data: list[Datum]) -> _PendingSave | None:
        """Submit the checkpoint holding the weights after `step` updates (never the one we resumed from)."""
        every = self.config.save_every
        if every <= 0 or step == self.start_step or step % every != 0:
            return None
        name = checkpoint_name(step)
        future = self.client.save_state(name, ttl_seconds=self.config.ttl_seconds)
        state: dict[str, Any] = {
            **loop_state(step, self.n_batches),
            "batch_fingerprint": batch_fingerprint(data),
        }
        return _PendingSave(name, future, state)

    async def _record_save(self, save: _PendingSave, metrics: dict[str, Any]) -> None:
        with timed("save", metrics):
            response = await save.future
        record = CheckpointRecord.from_dict({"name": save.name, **save.state, "state_path": response.path})
        append_jsonl(checkpoints_path(self.config.log_path), record.to_dict())
        logger.info("checkpoint %s (before step %d): %s", save.name, save.state["step"], response.path)

    async def _finish_step(self, s: _InFlightStep, progress: TrainingProgress) -> None:
        metrics = s.metrics
        if s.save is not None:
            await self._record_save(s.save, metrics)
        if s.evaluation is not None:
            with timed("evals", metrics):
                metrics.update(await s.evaluation.metrics())
        with timed("wait", metrics):
            fwd_out = await s.fwd_bwd
            optim_out = await s.optim
        metrics.update(batch_metrics(s.data, fwd_out))
        metrics.update(optim_metrics(optim_out))
        metrics.update(learning_rate=s.learning_rate, epoch=s.epoch, progress=(s.step + 1) / self.total_steps)
        s.clock.record_total(metrics)
        self.run.log(metrics, step=s.step)
        progress.update(metrics)


async def main_async(config: Config, service_client: ServiceClient | None = None) -> CheckpointRecord:
    """Train (or resume, or continue) the run described by `config`; returns its "final" checkpoint record.

    Connects to `config.base_url` (the bundled local server when None) unless a service client
    is given; a client made here is closed at the end.
    """
    run = TrainingRun(config, service_client, step_key="step")
    plan = plan_epochs(run, config)
    if isinstance(plan, CheckpointRecord):
        return plan
    evaluators = build_evaluators(config.evaluator_builders)
    if plan.test_set is not None:
        evaluators.append(NLLEvaluator.from_dataset(plan.test_set, name="test"))
    async with run:
        training_client = await run.create_training_client()
        logger.info(plan.describe("training", config.model_name))
        loop = _SupervisedRun(config, run, training_client, plan, evaluators)
        return await loop.train()


def main(config: Config) -> CheckpointRecord:
    """Synchronous entry point (recipes call this); see `main_async`."""
    return asyncio.run(main_async(config))
