"""The synchronous on-policy RL loop (`python -m ...` recipes call `main(Config(...))`).

Each step i:

    roll out batch i with the current sampler (a group's answers in one sample request, the
    step's matchups judged in one pass)  ->  advantages (+ KL penalty: the reference scores the
    batch in one forward)  ->  Datums  ->  pipelined training substeps  ->  a fresh sampler of
    the new weights (every `save_every` steps through a saved checkpoint)

Every `eval_every` steps (step 0 included) the evaluators judge the weights batch i was sampled
from: they start once its rollouts are sampled and run beside the update (never beside the
rollouts, whose logprobs would change by rounding in shared generation batches), and finish before
the next step's rollouts. Once more at the end: evaluate beside saving the "final" checkpoint,
plot the curves. Training is on-policy (the next step's rollouts wait for this step's update): a
sampling client is an immutable snapshot, so a new one is taken after every update (forgetting
that silently samples old weights).

Setup, resume (weights, Adam state and the next batch index), the finished-run rule, the client
and logging are `TrainingRun`'s (cookbook/utils/run.py), the same for every loop. Every step's
metrics go to metrics.jsonl, a few rollouts per step to rollouts.jsonl, and the curves to
metrics.png at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import chz
from chz.mungers import attr_if_none

from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.client.types import RL_LOSS_FN_NAMES, RLLossFnType
from cookbook.eval.evaluators import Evaluator, Metrics, TrainingClientEvaluator
from cookbook.eval.run import build_evaluators, run_evaluators
from cookbook.rl.advantages import ADVANTAGE_MODES, AdvantageMode
from cookbook.rl.completers import SamplingClientTokenCompleter
from cookbook.rl.kl_penalty import KL_PENALTY_MODES, KLPenaltyMode, ReferencePolicy
from cookbook.rl.metrics import entropy_metrics, env_metrics, sample_train_kl_metrics
from cookbook.rl.reference import create_reference_policy
from cookbook.rl.rollout_log import log_rollouts
from cookbook.rl.rollouts import derive_seed, do_batch_rollouts
from cookbook.rl.test_set_evaluator import RLTestSetEvaluator
from cookbook.rl.train_step import train_step
from cookbook.rl.training_batch import build_training_batch
from cookbook.rl.types import RLDataset, RLDatasetBuilder, TrajectoryGroup
from cookbook.tokenizer_utils import Tokenizer, get_tokenizer
from cookbook.utils.checkpoints import (
    FINAL_NAME,
    CheckpointRecord,
    get_last_checkpoint,
    save_checkpoint_async,
)
from cookbook.utils.metric_display import HEADLINE_METRICS
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from cookbook.utils.progress import TrainingProgress
from cookbook.utils.run import TrainingRun
from cookbook.utils.run_config import RunConfig
from cookbook.utils.timing import TIME_PREFIX, timed, timed_total

logger = logging.getLogger(__name__)

T = TypeVar("T")


PLOT_KEYS: tuple[str, ...] = (
    "env/all/reward/total",
    "test/env/all/reward/total",
    "kl_policy_ref",
    "optim/kl_sample_train_v1",
    "optim/entropy",
    "env/all/ac_tokens_per_turn",
    "by_group/frac_mixed",
)
"""RL curves drawn at the end, followed by any evaluator headline metric (e.g. test/win_rate)."""


@chz.chz
class Config(RunConfig):
    """An RL run: `RunConfig`'s run settings, plus the rollouts, the loss and the KL penalty.
    Its `optimizer` keeps the rate constant by default (as Tinker's RL loop; TRL decays it)."""

    dataset_builder: RLDatasetBuilder
    max_tokens: int

    optimizer: OptimizerConfig = optimizer_defaults(lr_schedule="constant")
    temperature: float = 1.0  # the losses assume 1: at other values the sampler's logprobs are tempered
    loss_fn: RLLossFnType = "importance_sampling"
    loss_fn_config: dict[str, float] | None = None
    num_substeps: int = 1

    kl_penalty_coef: float = 0.0  # 0 = no KL penalty
    kl_penalty_mode: KLPenaltyMode = "sequence"
    # The KL reference: a sampler or a state path; None = load_checkpoint_path, else the base model.
    # Setting it with kl_penalty_coef=0 still logs kl_policy_ref.
    kl_reference_path: str | None = None
    remove_constant_reward_groups: bool = False
    advantage_mode: AdvantageMode = (
        "group"  # "batch": normalised over the step's answers (see rl/advantages.py)
    )

    eval_every: int = 20  # 0 = evaluate only at the start and the end
    num_groups_to_log: int = 2  # groups per step written to <log_path>/rollouts.jsonl as text
    seed: int = 0  # sampling seeds
    lora_seed: int | None = chz.field(default=None, munger=attr_if_none("seed"))  # None: `seed`

    @chz.validate
    def _check(self) -> None:
        checks = [
            (self.max_tokens >= 1, f"max_tokens must be at least 1, got {self.max_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (
                self.loss_fn in RL_LOSS_FN_NAMES,
                f"loss_fn must be one of {RL_LOSS_FN_NAMES}, got {self.loss_fn!r}",
            ),
            (self.num_substeps >= 1, f"num_substeps must be at least 1, got {self.num_substeps}"),
            (self.kl_penalty_coef >= 0, f"kl_penalty_coef must be >= 0, got {self.kl_penalty_coef}"),
            (
                self.kl_penalty_mode in KL_PENALTY_MODES,
                f"kl_penalty_mode must be one of {KL_PENALTY_MODES}, got {self.kl_penalty_mode!r}",
            ),
            (
                self.advantage_mode in ADVANTAGE_MODES,
                f"advantage_mode must be one of {ADVANTAGE_MODES}, got {self.advantage_mode!r}",
            ),
            (self.num_groups_to_log >= 0, f"num_groups_to_log must be >= 0, got {self.num_groups_to_log}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def uses_reference(self) -> bool:
        """A reference policy is needed for the penalty, or asked for explicitly (to log the KL)."""
        return self.kl_penalty_coef > 0 or self.kl_reference_path is not None


def main(config: Config) -> CheckpointRecord:
    """Run (or resume, or continue) the RL loop to the end of the dataset or `max_steps`; returns the
    "final" checkpoint record."""
    return asyncio.run(main_async(config))


async def main_async(config: Config, service_client: ServiceClient | None = None) -> CheckpointRecord:
    """`main` for callers that run an event loop. Connects to `config.base_url` (the bundled local
    server when None) unless a service client is given; a client made here is closed at the end."""
    run = TrainingRun(config, service_client, step_key="batch", plot_keys=(*PLOT_KEYS, *HEADLINE_METRICS))
    if (done := run.already_finished(config.max_steps)) is not None:
        return done
    train_dataset, test_dataset = await config.dataset_builder()
    end = len(train_dataset) if config.max_steps is None else min(config.max_steps, len(train_dataset))
    if (done := run.already_finished(end)) is not None:
        return done
    start = run.steps_done(run.last) if run.last is not None else 0
    run.check_start(start, end)
    async with run:
        training_client = await run.create_training_client()
        evaluators = build_evaluators(config.evaluator_builders)
        if test_dataset is not None:
            evaluators.append(
                RLTestSetEvaluator(test_dataset, config.max_tokens, config.temperature, seed=config.seed)
            )
        reference = None
        if config.uses_reference:
            reference = await create_reference_policy(
                run.service, config.model_name, config.kl_reference_path or config.load_checkpoint_path
            )
        tokenizer = None
        if config.num_groups_to_log > 0:
            tokenizer = await asyncio.to_thread(get_tokenizer, config.model_name, run.service)
        loop = _Run(config, run, training_client, train_dataset, evaluators, reference, tokenizer)
        return await loop.train(start, end)


async def beside(evaluation: asyncio.Task[Metrics] | None, work: Awaitable[T], metrics: Metrics) -> T:
    """`work`'s result, with the `evaluation` running meanwhile added to `metrics` (cancelled if `work` fails)."""
    if evaluation is None:
        return await work
    try:
        result = await work
    except BaseException:
        evaluation.cancel()
        await asyncio.gather(evaluation, return_exceptions=True)
        raise
    evaluated = await evaluation
    clash = sorted(key for key in set(evaluated) & set(metrics) if not key.startswith(TIME_PREFIX))
    if clash:
        raise ValueError(f"evaluators report metric(s) {clash} that the RL step reports too")
    for key, value in evaluated.items():
        metrics[key] = metrics.get(key, 0.0) + value if key.startswith(TIME_PREFIX) else value
    return result


@dataclass
class _Run:
    """What the loop works with, once everything is set up."""

    config: Config
    run: TrainingRun
    training_client: TrainingClient
    dataset: RLDataset
    evaluators: Sequence[Evaluator]
    reference: ReferencePolicy | None
    tokenizer: Tokenizer | None

    async def train(self, start: int, end: int) -> CheckpointRecord:
        """Steps [start, end), then the final evaluation and checkpoint (whose record is returned)."""
        sampling_client = await self.training_client.save_weights_and_get_sampling_client_async()
        with TrainingProgress(total_steps=end, initial_step=start, desc="rl") as progress:
            for step in range(start, end):
                metrics: dict[str, float] = {
                    "progress/batch": step,
                    "progress/done_frac": (step + 1) / end,
                    "optim/lr": self.config.optimizer.lr_at(step, end),
                }
                with timed_total(metrics):
                    evaluating = bool(self.evaluators) and self.is_eval_step(step)
                    if evaluating:
                        metrics.update(await self.training_client_evaluation())
                    groups_P = await self.roll_out(step, sampling_client, metrics)
                    evaluation = self.start_sampling_evaluation(sampling_client) if evaluating else None
                    sampling_client = await beside(
                        evaluation, self.learn(step, end, sampling_client, groups_P, metrics), metrics
                    )
                self.run.log(metrics, step)
                progress.update(metrics)

        final_metrics: dict[str, float] = {"progress/batch": end, "progress/done_frac": 1.0}
        evaluation = None
        if self.evaluators:
            final_metrics.update(await self.training_client_evaluation())
            evaluation = self.start_sampling_evaluation(sampling_client)
        await beside(
            evaluation,
            save_checkpoint_async(
                self.training_client, FINAL_NAME, self.config.log_path, {"batch": end}, kind="both"
            ),
            final_metrics,
        )
        if evaluation is not None:
            self.run.log(final_metrics, end)
        final = get_last_checkpoint(self.config.log_path)
        assert final is not None and final.final
        return final

    async def training_client_evaluation(self) -> Metrics:
        """The training-client evaluators, on the current weights (before the step changes them)."""
        trainers = [ev for ev in self.evaluators if isinstance(ev, TrainingClientEvaluator)]
        metrics: Metrics = {}
        if trainers:
            with timed("eval", metrics):
                metrics.update(await run_evaluators(trainers, self.training_client))
        return metrics

    def start_sampling_evaluation(self, sampling_client: SamplingClient) -> asyncio.Task[Metrics]:
        """The sampling evaluators on `sampling_client` (the snapshot the step sampled from), as a task that
        runs beside the step's judging and update. It starts after the step's rollouts: sample requests
        in flight together share the server's generation batches, which changes their logprobs by
        rounding, so the training rollouts never share a batch with evaluation samples."""
        samplers = [ev for ev in self.evaluators if not isinstance(ev, TrainingClientEvaluator)]

        async def evaluate() -> Metrics:
            metrics: Metrics = {}
            with timed("eval", metrics):
                metrics.update(await run_evaluators(samplers, self.training_client, sampling_client))
            return metrics

        return asyncio.ensure_future(evaluate())

    def is_eval_step(self, step: int) -> bool:
        every = self.config.eval_every
        return step == 0 if every == 0 else step % every == 0

    async def roll_out(
        self, step: int, sampling_client: SamplingClient, metrics: dict[str, float]
    ) -> list[TrajectoryGroup]:
        """Batch `step`'s rollouts from `sampling_client`, scored; their metrics go to `metrics`."""
        config = self.config
        builders_P = self.dataset.get_batch(step)
        tags_P = [builder.logging_tags() for builder in builders_P]
        policy = SamplingClientTokenCompleter(sampling_client, config.max_tokens, config.temperature)
        with timed("rollouts", metrics):
            groups_P = await do_batch_rollouts(builders_P, policy, seed=derive_seed(config.seed, step))
        metrics.update(env_metrics(groups_P, tags_P))
        if self.tokenizer is not None:
            log_rollouts(config.log_path, step, groups_P, tags_P, self.tokenizer, config.num_groups_to_log)
        return groups_P

    async def learn(
        self,
        step: int,
        end: int,
        sampling_client: SamplingClient,
        groups_P: list[TrajectoryGroup],
        metrics: dict[str, float],
    ) -> SamplingClient:
        """Train on the step's rollouts; returns the sampler of the weights that leaves."""
        trained = await self.update(step, end, groups_P, metrics)
        with timed("sampler", metrics):
            return await self.next_sampler(step + 1, end, sampling_client, trained)

    async def update(
        self, step: int, end: int, groups_P: list[TrajectoryGroup], metrics: dict[str, float]
    ) -> bool:
        """Build the training data of batch `step` (of `end`) and train on it; False when the update was skipped."""
        config = self.config
        with timed("advantages", metrics):
            batch = await build_training_batch(
                groups_P,
                reference=self.reference,
                kl_penalty_coef=config.kl_penalty_coef,
                kl_penalty_mode=config.kl_penalty_mode,
                remove_constant_groups=config.remove_constant_reward_groups,
                advantage_mode=config.advantage_mode,
            )
        metrics.update(batch.metrics())
        metrics.update(entropy_metrics(batch.data_D))
        if not batch.has_signal:
            logger.warning(
                "step %d: every advantage is zero (all %d groups got equal rewards); skipping the update",
                step,
                len(groups_P),
            )
            metrics["optim/skipped_update"] = 1
            return False
        with timed("train", metrics):
            training_logprobs_D, optim_metrics = await train_step(
                self.training_client,
                batch.data_D,
                loss_fn=config.loss_fn,
                adam_params=config.optimizer.adam_params(step, end),
                loss_fn_config=config.loss_fn_config,
                num_substeps=config.num_substeps,
            )
        metrics.update(optim_metrics)
        metrics.update(sample_train_kl_metrics(batch.data_D, training_logprobs_D))
        metrics["optim/skipped_update"] = 0
        return True

    async def next_sampler(
        self, batches_done: int, end: int, current: SamplingClient, trained: bool
    ) -> SamplingClient:
        """The sampler for the next step; on `save_every` boundaries it comes from a saved checkpoint."""
        every = self.config.save_every
        if every > 0 and batches_done % every == 0 and batches_done < end:
            paths = await save_checkpoint_async(
                self.training_client,
                f"{batches_done:06d}",
                self.config.log_path,
                {"batch": batches_done},
                kind="both",
                ttl_seconds=self.config.ttl_seconds,
            )
            return await self.training_client.create_sampling_client_async(paths["sampler_path"])
        if not trained:
            return current  # the weights did not change
        return await self.training_client.save_weights_and_get_sampling_client_async()
