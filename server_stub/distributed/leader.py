"""`LeaderEngine`: rank 0's engine, the only one the web layer sees.

Training and sampling calls go to every rank and run everywhere (each rank holds every model's
shard and every sampler; a sampling batch is split across ranks); export and checkpoint deletion
run on rank 0 alone. After a call, every rank reports whether it failed:
a `UserError` (the same on every rank) is the caller's; anything else, or a collective that fails,
means the ranks may no longer agree, so the engine is broken from then on: every heavy call fails
at once with a server error, cheap metadata still answers, and `health_problem` says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cookbook.client import types
from server_stub.compute_turns import beside_for, turns_for
from server_stub.distributed.group import HEARTBEAT_SECONDS, leave_group
from server_stub.distributed.protocol import HEARTBEAT, STOP, Command, Failure, collect_failures, send_command
from server_stub.distributed.rank_engine import RankEngine
from server_stub.engine import ConflictError, ModelLimits, SampleJob, UserError
from server_stub.validation import check_safe_name

logger = logging.getLogger(__name__)


class RanksBroken(RuntimeError):
    """A rank died, hung or diverged: the distributed engine cannot compute any more."""


class LeaderEngine:
    def __init__(self, local: RankEngine, rank_death: Callable[[], str | None] | None = None):
        self.local = local
        self.world = local.place.world
        self._lock = threading.Lock()  # one collective sequence at a time: calls and heartbeats
        self._broken: str | None = None
        self._closed = threading.Event()
        self._rank_death = rank_death
        self._on_close: list[Callable[[], None]] = []
        threading.Thread(target=self._watch, name="ranks-watch", daemon=True).start()

    # -- health ------------------------------------------------------------------------------

    supports_reward_head = False  # see create_model

    def health_problem(self) -> str | None:
        """None while every rank is in step; else why the server cannot compute."""
        return self._broken

    def _break(self, reason: str) -> None:
        if self._broken is None:
            logger.error("distributed engine broken: %s", reason)
            self._broken = reason

    def _check(self) -> None:
        if self._broken is not None:
            raise RanksBroken(f"the distributed server cannot compute: {self._broken}; restart it")

    def _watch(self) -> None:
        """Notice a dead worker process at once, and keep idle workers' command waits short."""
        beats = 0.0
        while not self._closed.wait(0.5):
            death = self._rank_death() if self._rank_death is not None else None
            if death is not None:
                self._break(death)
            beats += 0.5
            if beats >= HEARTBEAT_SECONDS and self._broken is None and self._lock.acquire(blocking=False):
                beats = 0.0
                try:
                    send_command(Command(HEARTBEAT))
                except Exception as exc:
                    self._break(f"heartbeat to the workers failed: {exc}")
                finally:
                    self._lock.release()

    # -- calls -------------------------------------------------------------------------------

    def _everywhere(self, method: str, *args: Any) -> Any:
        """Run `method` on every rank; rank 0's result, or its error, once all ranks have reported."""
        with self._lock:
            self._check()
            try:
                send_command(Command(method, args))
            except Exception as exc:
                death = self._rank_death() if self._rank_death is not None else None
                self._break(death or f"could not reach the worker ranks: {exc}")
                self._check()
            own: BaseException | None = None
            result = None
            try:
                result = getattr(self.local, method)(*args)
            except Exception as exc:
                own = exc
            try:
                failures = collect_failures(None if own is None else Failure.of(own), self.world)
            except Exception as exc:
                death = self._rank_death() if self._rank_death is not None else None
                self._break(death or f"a rank stopped answering during {method}: {exc}")
                raise RanksBroken(f"{method} failed: {self._broken}") from own
            problems = [(rank, f) for rank, f in enumerate(failures) if f is not None and not f.user]
            if problems:
                rank, failure = problems[0]
                self._break(f"rank {rank} failed in {method}: {failure.kind}: {failure.message}")
            if own is not None:
                raise own
            if problems:
                self._check()
            return result

    def _here(self, method: str, *args: Any) -> Any:
        """Run `method` on rank 0 alone (no other rank holds what it needs)."""
        self._check()
        return getattr(self.local, method)(*args)

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def close(self) -> None:
        """Stop the workers and leave the group (after the compute thread has stopped)."""
        self._closed.set()
        with self._lock:
            if self._broken is None:
                try:
                    send_command(Command(STOP))
                except Exception as exc:
                    logger.warning("could not stop the workers: %s", exc)
            leave_group()
        for callback in self._on_close:
            callback()

    # -- cheap metadata (rank 0's view, always answered) --------------------------------------

    def supported_models(self) -> list[types.SupportedModel]:
        return self.local.supported_models()

    def model_limits(self, base_model: str) -> ModelLimits:
        return self.local.model_limits(base_model)

    def tokenizer(self, base_model: str) -> types.TokenizerResponse:
        return self.local.tokenizer(base_model)

    def base_model_of(self, model_id: str) -> str:
        return self.local.base_model_of(model_id)

    def sampler_base_model(self, sampler_id: str) -> str:
        return self.local.sampler_base_model(sampler_id)

    def get_info(self, model_id: str) -> types.GetInfoResponse:
        return self.local.get_info(model_id)

    def get_sampler(self, sampler_id: str) -> types.GetSamplerResponse:
        return self.local.get_sampler(sampler_id)

    def weights_info(self, tinker_path: str) -> types.WeightsInfoResponse:
        return self.local.weights_info(tinker_path)

    def training_run(self, run_id: str) -> types.TrainingRun:
        return self.local.training_run(run_id)

    def list_checkpoints(self, run_id: str) -> types.CheckpointsListResponse:
        return self.local.list_checkpoints(run_id)

    # -- heavy work on every rank ---------------------------------------------------------------

    def create_model(
        self,
        model_id: str,
        base_model: str,
        lora_config: types.LoraConfig | None,
        user_metadata: dict[str, Any] | None,
        reward_head: bool = False,
    ) -> types.CreateModelResponse:
        check_safe_name(model_id, "model_id")
        if reward_head:  # a pair's two scores would land on different ranks; not built for several ranks
            raise UserError(
                "a reward head needs a one-rank server: this one runs on several ranks (--ranks)",
                field="reward_head",
            )
        if self.local.runs.exists(model_id):  # only rank 0 sees the storage: refuse before the workers build
            raise ConflictError(f"training run {model_id!r} already exists in storage", field="model_id")
        return self._everywhere("create_model", model_id, base_model, lora_config, user_metadata)

    def unload_model(self, model_id: str) -> types.UnloadModelResponse:
        return self._everywhere("unload_model", model_id)

    def forward_backward(
        self, model_id: str, fwd: types.ForwardBackwardInput, backward: bool
    ) -> types.ForwardBackwardOutput:
        return self._everywhere("forward_backward", model_id, fwd, backward)

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        return self._everywhere("optim_step", model_id, adam)

    def save_state(
        self, model_id: str, name: str, overwrite: bool, ttl_seconds: int | None
    ) -> types.SaveWeightsResponse:
        return self._everywhere("save_state", model_id, name, overwrite, ttl_seconds)

    def load_state(self, model_id: str, tinker_path: str, optimizer: bool) -> types.LoadWeightsResponse:
        return self._everywhere("load_state", model_id, tinker_path, optimizer)

    def save_sampler_weights(
        self, model_id: str, name: str | None, ttl_seconds: int | None
    ) -> types.SaveWeightsForSamplerResponseInternal:
        return self._everywhere("save_sampler_weights", model_id, name, ttl_seconds)

    def create_sampler(self, base_model: str | None, model_path: str | None) -> types.GetSamplerResponse:
        return self._everywhere("create_sampler", base_model, model_path)

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        # The ranks decode in lockstep: no training call may cut in on rank 0 or run beside it.
        with turns_for(lambda setup: False), beside_for(None):
            return self._everywhere("sample", jobs)

    def release_sampler(self, sampler_id: str) -> None:
        self._everywhere("release_sampler", sampler_id)  # every rank holds a replica of each sampler

    # -- heavy work on rank 0 alone -----------------------------------------------------------

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        self._here("delete_checkpoint", run_id, checkpoint_id)

    def sweep_storage(self) -> None:
        self._here("sweep_storage")  # only rank 0 touches --storage

    def export_archive(self, tinker_path: str, fmt: str) -> Path:
        return self._here("export_archive", tinker_path, fmt)
