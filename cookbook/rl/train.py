"""The synchronous on-policy RL loop (`python -m ...` recipes call `main(Config(...))`).

Each step i:

    evaluate (every `eval_every` steps, step 0 included)  ->  roll out batch i with the current
    sampler  ->  advantages (+ KL penalty)  ->  Datums  ->  pipelined training substeps  ->
    a fresh sampler of the new weights (every `save_every` steps through a saved checkpoint)

and once more at the end: evaluate, save the "final" checkpoint, plot the curves. Training is
on-policy: a sampling client is an immutable snapshot, so a new one is taken after every update
(forgetting that silently samples old weights).

Resuming: re-running with the same `log_path` continues from the last checkpoint recorded in
`<log_path>/checkpoints.jsonl` (weights, Adam state and the next batch index); a run that has
finished does nothing (unless `max_steps` was raised: then it continues from its final state);
a log dir holding another run's config is refused. Every step's metrics go to metrics.jsonl,
a few rollouts per step to rollouts.jsonl, and the curves to metrics.png at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeGuard, get_args

import chz

from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.client.connection import connect
from cookbook.client.types import AdamParams
from cookbook.eval.evaluators import Evaluator, EvaluatorBuilder
from cookbook.eval.run import build_evaluators, run_evaluators
from cookbook.rl.completers import SamplingClientTokenCompleter
from cookbook.rl.kl_penalty import KL_PENALTY_MODES, KLPenaltyMode
from cookbook.rl.metrics import entropy_metrics, env_metrics, sample_train_kl_metrics
from cookbook.rl.reference import create_reference_sampling_client
from cookbook.rl.rollout_log import log_rollouts
from cookbook.rl.rollouts import derive_seed, do_batch_rollouts
from cookbook.rl.test_set_evaluator import RLTestSetEvaluator
from cookbook.rl.train_step import train_step
from cookbook.rl.training_batch import build_training_batch
from cookbook.rl.types import RLDataset, RLDatasetBuilder
from cookbook.tokenizer_utils import Tokenizer, get_tokenizer
from cookbook.utils.adam_settings import adam_params_for
from cookbook.utils.checkpoints import (
    FINAL_NAME,
    CheckpointRecord,
    get_last_checkpoint,
    save_checkpoint_async,
)
from cookbook.utils.lr_scheduling import LR_SCHEDULES, LRSchedule, compute_schedule_lr_multiplier
from cookbook.utils.metric_display import HEADLINE_METRICS
from cookbook.utils.ml_log import Logger, setup_logging
from cookbook.utils.plotting import plot_metrics
from cookbook.utils.progress import TrainingProgress, console_write
from cookbook.utils.run_dir import BehaviorIfExists, prepare_log_dir
from cookbook.utils.timing import timed, timed_total

logger = logging.getLogger(__name__)

RLLossFn = Literal["importance_sampling", "ppo", "cispo", "dro"]
RL_LOSS_FNS: tuple[str, ...] = get_args(RLLossFn)

PLOT_KEYS: tuple[str, ...] = (
    "env/all/reward/total", "test/env/all/reward/total", "kl_policy_ref", "optim/kl_sample_train_v1",
    "optim/entropy", "env/all/ac_tokens_per_turn", "by_group/frac_mixed",
)
"""RL curves drawn at the end, followed by any evaluator headline metric (e.g. test/win_rate)."""


@chz.chz
class Config:
    """An RL run. Only the first five fields are required."""

    learning_rate: float
    dataset_builder: RLDatasetBuilder
    model_name: str
    max_tokens: int
    log_path: str

    base_url: str | None = None
    load_checkpoint_path: str | None = None  # weights-only init of a new run (e.g. the SFT state_path)
    lora_rank: int = 32  # 0 = full-weight training
    temperature: float = 1.0  # the losses assume 1: at other values the sampler's logprobs are tempered
    loss_fn: RLLossFn = "importance_sampling"
    loss_fn_config: dict[str, float] | None = None
    num_substeps: int = 1
    # The learning rate over the run's steps (Tinker's RL loop keeps it constant; TRL decays it).
    lr_schedule: LRSchedule = "constant"
    lr_warmup_steps: int = 0

    kl_penalty_coef: float = 0.0  # 0 = no KL penalty
    kl_penalty_mode: KLPenaltyMode = "sequence"
    # The KL reference: a sampler or a state path; None = load_checkpoint_path, else the base model.
    # Setting it with kl_penalty_coef=0 still logs kl_policy_ref.
    kl_reference_path: str | None = None
    remove_constant_reward_groups: bool = False

    eval_every: int = 20  # 0 = evaluate only at the start and the end
    save_every: int = 20  # 0 = only the final checkpoint
    evaluator_builders: list[EvaluatorBuilder] = chz.field(default_factory=list)
    num_groups_to_log: int = 2  # groups per step written to <log_path>/rollouts.jsonl as text

    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0  # 0 = no clipping

    max_steps: int | None = None  # stop after this many batches in total (counting resumed ones)
    seed: int = 0  # LoRA init and sampling seeds
    wandb_project: str | None = None
    wandb_name: str | None = None
    behavior_if_log_dir_exists: BehaviorIfExists = "resume"

    @chz.validate
    def _check(self) -> None:
        checks = [
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.max_tokens >= 1, f"max_tokens must be at least 1, got {self.max_tokens}"),
            (self.lora_rank >= 0, f"lora_rank must be >= 0 (0 = full weights), got {self.lora_rank}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.loss_fn in RL_LOSS_FNS, f"loss_fn must be one of {RL_LOSS_FNS}, got {self.loss_fn!r}"),
            (self.num_substeps >= 1, f"num_substeps must be at least 1, got {self.num_substeps}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"),
            (self.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}"),
            (self.kl_penalty_coef >= 0, f"kl_penalty_coef must be >= 0, got {self.kl_penalty_coef}"),
            (self.kl_penalty_mode in KL_PENALTY_MODES,
             f"kl_penalty_mode must be one of {KL_PENALTY_MODES}, got {self.kl_penalty_mode!r}"),
            (self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}"),
            (self.save_every >= 0, f"save_every must be >= 0, got {self.save_every}"),
            (self.num_groups_to_log >= 0, f"num_groups_to_log must be >= 0, got {self.num_groups_to_log}"),
            (self.max_steps is None or self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def learning_rate_at(self, step: int, end: int) -> float:
        """The rate of step `step` of a run of `end` steps. A warm-up as long as the run or longer
        is cut to leave one step of decay. Raising max_steps to continue a finished run stretches
        the schedule over the new `end`."""
        warmup = min(self.lr_warmup_steps, end - 1)
        return self.learning_rate * compute_schedule_lr_multiplier(self.lr_schedule, step, end, warmup)

    def adam_params(self, step: int, end: int) -> AdamParams:
        return adam_params_for(self, self.learning_rate_at(step, end))

    @property
    def uses_reference(self) -> bool:
        """A reference policy is needed for the penalty, or asked for explicitly (to log the KL)."""
        return self.kl_penalty_coef > 0 or self.kl_reference_path is not None


def main(config: Config) -> CheckpointRecord:
    """Run (or resume) the RL loop to the end of the dataset or `max_steps`; returns the "final" checkpoint record."""
    return asyncio.run(main_async(config))


async def main_async(config: Config, service_client: ServiceClient | None = None) -> CheckpointRecord:
    """`main` for callers that run an event loop. Connects to `config.base_url` (the bundled local
    server when None) unless a service client is given; a client made here is closed at the end."""
    resuming = prepare_log_dir(config.log_path, config, config.behavior_if_log_dir_exists)
    last = get_last_checkpoint(config.log_path) if resuming else None
    if config.max_steps is not None and _finished(last, config.max_steps):  # known without building the data
        return _say_finished(config, last)
    train_dataset, test_dataset = await config.dataset_builder()
    end = len(train_dataset) if config.max_steps is None else min(config.max_steps, len(train_dataset))
    if _finished(last, end):
        return _say_finished(config, last)

    service = service_client if service_client is not None else await asyncio.to_thread(connect, config.base_url)
    try:
        with setup_logging(config.log_path, config.wandb_project, config.wandb_name, config) as ml_logger:
            training_client, start = await _create_training_client(service, config, last)
            evaluators = build_evaluators(config.evaluator_builders)
            if test_dataset is not None:
                evaluators.append(RLTestSetEvaluator(test_dataset, config.max_tokens, config.temperature,
                                                     seed=config.seed))
            reference = None
            if config.uses_reference:
                reference = await create_reference_sampling_client(
                    service, config.model_name, config.kl_reference_path or config.load_checkpoint_path)
            tokenizer = None
            if config.num_groups_to_log > 0:
                tokenizer = await asyncio.to_thread(get_tokenizer, config.model_name, service)
            run = _Run(config, training_client, train_dataset, evaluators, reference, tokenizer, ml_logger)
            final = await run.train(start, end)
        plot_keys = dict.fromkeys((*PLOT_KEYS, *HEADLINE_METRICS))
        plot_metrics(config.log_path, [k for k in plot_keys if k in run.logged_keys])
        return final
    finally:
        if service_client is None:
            service.close()


def _finished(last: CheckpointRecord | None, end: int) -> TypeGuard[CheckpointRecord]:
    """Whether the last checkpoint is a final one that already covers the batches up to `end`."""
    return last is not None and last.final and last.batch is not None and last.batch >= end


def _say_finished(config: Config, final: CheckpointRecord) -> CheckpointRecord:
    console_write(f"{config.log_path} holds a finished run (checkpoint {final.name!r} after batch {final.batch}); "
                  f"nothing to do. Raise max_steps to continue it, or use another log_path.")
    return final


async def _create_training_client(service_client: ServiceClient, config: Config,
                                  last: CheckpointRecord | None) -> tuple[TrainingClient, int]:
    """The policy's training client and the batch to start at: resumed, initialised from a checkpoint, or fresh."""
    if last is not None:
        if last.batch is None or last.state_path is None:
            raise ValueError(f"checkpoint {last.name!r} in {config.log_path} has no batch index or state_path")
        logger.info("resuming from checkpoint %r (batch %d): %s", last.name, last.batch, last.state_path)
        client = await service_client.create_training_client_from_state_with_optimizer_async(last.state_path)
        return client, last.batch
    if config.load_checkpoint_path is not None:
        info = await service_client.weights_info_async(config.load_checkpoint_path)
        rank = (info.lora_rank or 0) if info.is_lora else 0
        if info.base_model != config.model_name or rank != config.lora_rank:
            raise ValueError(
                f"load_checkpoint_path {config.load_checkpoint_path} holds a {info.base_model!r} model with "
                f"lora_rank={rank}, but the config says model_name={config.model_name!r}, "
                f"lora_rank={config.lora_rank}; make them match")
        return await service_client.create_training_client_from_state_async(config.load_checkpoint_path), 0
    client = await service_client.create_lora_training_client_async(config.model_name, rank=config.lora_rank,
                                                                    seed=config.seed)
    return client, 0


@dataclass
class _Run:
    """What the loop works with, once everything is set up."""

    config: Config
    training_client: TrainingClient
    dataset: RLDataset
    evaluators: Sequence[Evaluator]
    reference: SamplingClient | None
    tokenizer: Tokenizer | None
    ml_logger: Logger
    logged_keys: set[str] = field(default_factory=set)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.ml_logger.log_metrics(metrics, step=step)
        self.logged_keys.update(metrics)

    async def train(self, start: int, end: int) -> CheckpointRecord:
        """Steps [start, end), then the final evaluation and checkpoint (whose record is returned)."""
        sampling_client = await self.training_client.save_weights_and_get_sampling_client_async()
        with TrainingProgress(total_steps=end, initial_step=start, desc="rl") as progress:
            for step in range(start, end):
                metrics: dict[str, float] = {"progress/batch": step, "progress/done_frac": (step + 1) / end,
                                             "optim/lr": self.config.learning_rate_at(step, end)}
                with timed_total(metrics):
                    if self.evaluators and self.is_eval_step(step):
                        with timed("eval", metrics):
                            metrics.update(await run_evaluators(self.evaluators, self.training_client))
                    trained = await self.rl_step(step, end, sampling_client, metrics)
                    with timed("sampler", metrics):
                        sampling_client = await self.next_sampler(step + 1, end, sampling_client, trained)
                self.log(metrics, step)
                progress.update(metrics)

        final_metrics: dict[str, float] = {"progress/batch": end, "progress/done_frac": 1.0}
        if self.evaluators:
            with timed("eval", final_metrics):
                final_metrics.update(await run_evaluators(self.evaluators, self.training_client))
            self.log(final_metrics, end)
        await save_checkpoint_async(self.training_client, FINAL_NAME, self.config.log_path, {"batch": end},
                                    kind="both")
        final = get_last_checkpoint(self.config.log_path)
        assert final is not None and final.final
        return final

    def is_eval_step(self, step: int) -> bool:
        every = self.config.eval_every
        return step == 0 if every == 0 else step % every == 0

    async def rl_step(self, step: int, end: int, sampling_client: SamplingClient,
                      metrics: dict[str, float]) -> bool:
        """Roll out batch `step` (of `end`), build the training data and train on it; False when the update was skipped."""
        config = self.config
        builders_P = self.dataset.get_batch(step)
        tags_P = [builder.logging_tags() for builder in builders_P]
        policy = SamplingClientTokenCompleter(sampling_client, config.max_tokens, config.temperature)
        with timed("rollouts", metrics):
            groups_P = await do_batch_rollouts(builders_P, policy, seed=derive_seed(config.seed, step))
        metrics.update(env_metrics(groups_P, tags_P))
        if self.tokenizer is not None:
            log_rollouts(config.log_path, step, groups_P, tags_P, self.tokenizer, config.num_groups_to_log)
        with timed("advantages", metrics):
            batch = await build_training_batch(
                groups_P, reference=self.reference, kl_penalty_coef=config.kl_penalty_coef,
                kl_penalty_mode=config.kl_penalty_mode, remove_constant_groups=config.remove_constant_reward_groups)
        metrics.update(batch.metrics())
        metrics.update(entropy_metrics(batch.data_D))
        if not batch.has_signal:
            logger.warning("step %d: every advantage is zero (all %d groups got equal rewards); "
                           "skipping the update", step, len(groups_P))
            metrics["optim/skipped_update"] = 1
            return False
        with timed("train", metrics):
            training_logprobs_D, optim_metrics = await train_step(
                self.training_client, batch.data_D, loss_fn=config.loss_fn, adam_params=config.adam_params(step, end),
                loss_fn_config=config.loss_fn_config, num_substeps=config.num_substeps)
        metrics.update(optim_metrics)
        metrics.update(sample_train_kl_metrics(batch.data_D, training_logprobs_D))
        metrics["optim/skipped_update"] = 0
        return True

    async def next_sampler(self, batches_done: int, end: int, current: SamplingClient,
                           trained: bool) -> SamplingClient:
        """The sampler for the next step; on `save_every` boundaries it comes from a saved checkpoint."""
        every = self.config.save_every
        if every > 0 and batches_done % every == 0 and batches_done < end:
            paths = await save_checkpoint_async(self.training_client, f"{batches_done:06d}", self.config.log_path,
                                                {"batch": batches_done}, kind="both")
            return await self.training_client.create_sampling_client_async(paths["sampler_path"])
        if not trained:
            return current  # the weights did not change
        return await self.training_client.save_weights_and_get_sampling_client_async()
