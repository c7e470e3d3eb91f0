"""The run around a training loop: log dir, resume point, finished-run rule, clients, logging, plot.

The SFT, DPO and RL loops each drive one `TrainingRun`, in this order:

    run = TrainingRun(config, service_client, step_key="step")  # log dir ready, resume point read
    if (done := run.already_finished(config.max_steps)) is not None:
        return done                                   # decided before any data is built
    ...build the data and count the run's steps...
    if (done := run.already_finished(total_steps)) is not None:
        return done
    async with run:                                   # connected, logging to metrics.jsonl
        client = await run.create_training_client()   # resumed, from load_checkpoint_path, or fresh
        ...the loop, logging through run.log(metrics, step)...
    # on the way out: the curves are plotted, and a service client made here is closed

Its rules are the same for every loop:
- Resume: re-running with the same `log_path` continues from the last checkpoint recorded in
  `checkpoints.jsonl` (weights and Adam state); a log dir holding another run's config is refused
  unless `behavior_if_log_dir_exists="overwrite"` (run_dir.py).
- Finished runs: a run whose "final" checkpoint was taken at step N continues from that final
  state when it now has more than N steps (`max_steps` raised); otherwise it does nothing and
  says so.
- Starting checkpoints: the checkpoint a run starts from (its own, or `load_checkpoint_path`)
  must hold the config's `model_name` and `lora_rank`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from cookbook.client.abstract import ServiceClient, TrainingClient
from cookbook.utils.checkpoints import CheckpointRecord, get_last_checkpoint
from cookbook.utils.jsonl import drop_rows_from_step
from cookbook.utils.ml_log import METRICS_FILE, Logger, setup_logging
from cookbook.utils.plotting import plot_metrics
from cookbook.utils.progress import console_write
from cookbook.utils.run_config import RunConfig
from cookbook.utils.run_dir import prepare_log_dir

logger = logging.getLogger(__name__)


class TrainingRun:
    """One invocation of a training loop over the run in `config.log_path`.

    `step_key` names the checkpoint-record key that holds the number of steps done (the RL
    loop records it as "batch"); `plot_keys` are the curves to draw at the end, those that
    were logged (None: plotting's defaults).
    """

    def __init__(
        self,
        config: RunConfig,
        service_client: ServiceClient | None = None,
        *,
        step_key: str = "step",
        plot_keys: Sequence[str] | None = None,
    ):
        self.config = config
        self.step_key = step_key
        self.plot_keys = plot_keys
        self.logged_keys: set[str] = set()
        self._given_service = service_client
        self._service: ServiceClient | None = None
        self._logger: Logger | None = None
        self._resuming = prepare_log_dir(config.log_path, config, config.behavior_if_log_dir_exists)
        self.last: CheckpointRecord | None = get_last_checkpoint(config.log_path) if self._resuming else None
        """The checkpoint this invocation starts from (None: a new run)."""

    # -- before connecting --------------------------------------------------------------------

    def steps_done(self, record: CheckpointRecord) -> int:
        """How many steps the run had trained when `record` was saved."""
        step = record.get(self.step_key)
        if not isinstance(step, int):
            raise ValueError(
                f"checkpoint {record.name!r} in {self.config.log_path} has no {self.step_key!r}; "
                "it was not written by this loop"
            )
        return step

    def already_finished(self, total_steps: int | None) -> CheckpointRecord | None:
        """The final checkpoint record when the run finished at or past `total_steps` (and says so);
        None when there is training to do. `total_steps=None` (not known yet) decides nothing."""
        last = self.last
        if last is None or not last.final or total_steps is None:
            return None
        done = self.steps_done(last)
        if done < total_steps:
            return None  # continued from its final state (create_training_client says so)
        console_write(
            f"{self.config.log_path}: this run already finished at step {done} (final state: "
            f"{last.state_path}); nothing to do. A finished run continues when max_steps is raised "
            "past its last step; or start another log_path with load_checkpoint_path=<that state>."
        )
        return last

    def check_start(self, start_step: int, total_steps: int) -> None:
        """Refuse a resume point past the run's end (a checkpoint that no longer fits max_steps)."""
        if start_step > total_steps:
            raise ValueError(
                f"checkpoint {self.last.name if self.last else '?'!r} in {self.config.log_path} is at "
                f"step {start_step}, past this run's {total_steps} steps "
                f"(max_steps={self.config.max_steps})"
            )

    # -- connected ----------------------------------------------------------------------------

    async def __aenter__(self) -> TrainingRun:
        if self._given_service is not None:
            self._service = self._given_service
        else:
            from cookbook.client.connection import connect

            self._service = await asyncio.to_thread(connect, self.config.base_url)
        try:
            c = self.config
            if self._resuming:  # rows past the resume point were logged by a run that died before saving
                start = self.steps_done(self.last) if self.last is not None else 0
                drop_rows_from_step(Path(c.log_path) / METRICS_FILE, start)
            self._logger = setup_logging(c.log_path, c.wandb_project, c.wandb_name, config=c)
        except BaseException:
            self._close_own_service()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._logger is not None:
                self._logger.close()
                self._logger = None
            if exc_type is None:
                keys = (
                    None if self.plot_keys is None else [k for k in self.plot_keys if k in self.logged_keys]
                )
                logger.info("curves in %s", plot_metrics(self.config.log_path, keys))
        finally:
            self._close_own_service()

    def _close_own_service(self) -> None:
        if self._given_service is None and self._service is not None:
            self._service.close()
        self._service = None

    @property
    def service(self) -> ServiceClient:
        if self._service is None:
            raise RuntimeError("TrainingRun.service is only available inside `async with run:`")
        return self._service

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """One row of metrics.jsonl (also printed, and sent to wandb when configured)."""
        if self._logger is None:
            raise RuntimeError("TrainingRun.log is only available inside `async with run:`")
        self._logger.log_metrics(metrics, step=step)
        self.logged_keys.update(metrics)

    async def create_training_client(self, reward_head: bool = False) -> TrainingClient:
        """The loop's training client: resumed from `self.last` (weights and Adam state), else
        initialised from `load_checkpoint_path` (weights, fresh optimizer), else a fresh model
        (LoRA of `lora_rank`, or full weights at 0). The renderer name goes into the run's metadata.
        `reward_head` gives a new or loaded model a reward head (a resumed one has it from its checkpoint)."""
        c = self.config
        metadata = {"renderer_name": c.renderer_name} if c.renderer_name else None
        if self.last is not None:
            path = self.last.state_path
            if path is None:
                raise ValueError(f"checkpoint {self.last.name!r} in {c.log_path} has no state_path")
            await self._check_checkpoint(path, f"checkpoint {self.last.name!r} ({path})")
            logger.info(
                "resuming from checkpoint %r (step %d): %s", self.last.name, self.steps_done(self.last), path
            )
            return await self.service.create_training_client_from_state_with_optimizer_async(
                path, user_metadata=metadata
            )
        if c.load_checkpoint_path is not None:
            await self._check_checkpoint(
                c.load_checkpoint_path, f"load_checkpoint_path {c.load_checkpoint_path}"
            )
            logger.info("initialising the weights from %s (fresh optimizer)", c.load_checkpoint_path)
            return await self.service.create_training_client_from_state_async(
                c.load_checkpoint_path, user_metadata=metadata, reward_head=reward_head
            )
        return await self.service.create_lora_training_client_async(
            c.model_name, rank=c.lora_rank, seed=c.lora_seed, user_metadata=metadata, reward_head=reward_head
        )

    async def _check_checkpoint(self, path: str, what: str) -> None:
        """A checkpoint to start from holds this config's base model and LoRA rank."""
        info = await self.service.weights_info_async(path)
        rank = (info.lora_rank or 0) if info.is_lora else 0
        if info.base_model != self.config.model_name or rank != self.config.lora_rank:
            raise ValueError(
                f"{what} holds a {info.base_model!r} model with lora_rank={rank}, but the config "
                f"says model_name={self.config.model_name!r}, lora_rank={self.config.lora_rank}; "
                "make them match"
            )
