"""The scalar reward-model loop: the Bradley-Terry loss on [chosen, rejected] pairs, on the server.

Per step one `forward_backward(batch, "bradley_terry")` (datums 2i and 2i+1 are a pair; `margin`
and `centering_coef` go to the loss as its settings) and one `optim_step`, submitted together and
then awaited. The model is created with a reward head; started from `load_checkpoint_path` (e.g.
the SFT weights, which have none) it gets a new head on those weights. Checkpoints, resume and
the finished-run rule are the SFT loop's (`plan_epochs`, a checkpoint before step s records batch
s), setup and logging `TrainingRun`'s.

Metrics per step: `train/bt_loss` (mean over pairs), `train/accuracy` (pairs scored the right
way round), the optimizer's; evaluators (e.g. `RewardAccuracyEvaluator`) every `eval_every` steps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import chz

from cookbook.client.abstract import ServiceClient, TrainingClient
from cookbook.eval.evaluators import Evaluator
from cookbook.eval.run import build_evaluators, run_evaluators
from cookbook.preference.reward_model import require_reward_heads
from cookbook.supervised.loop_config import SupervisedRunConfig
from cookbook.supervised.train import (
    EpochPlan,
    checkpoint_name,
    loop_state,
    optim_metrics,
    plan_epochs,
    position_of_step,
)
from cookbook.utils.checkpoints import FINAL_NAME, CheckpointRecord, save_checkpoint_async
from cookbook.utils.progress import TrainingProgress
from cookbook.utils.run import TrainingRun
from cookbook.utils.timing import StepClock, timed

logger = logging.getLogger(__name__)


@chz.chz
class Config(SupervisedRunConfig):
    """One reward-model run. `dataset_builder` yields [chosen, rejected] pairs (a
    RewardDatasetBuilderFromComparisons; its batch size counts pairs)."""

    margin: float = 0.0  # the loss is -log σ(r_c - r_r - margin)
    centering_coef: float = 0.0  # > 0 adds centering_coef * (r_c + r_r)² (keeps scores near zero)

    @chz.validate
    def _check(self) -> None:
        if self.centering_coef < 0:
            raise ValueError(f"centering_coef must be >= 0, got {self.centering_coef}")


class _RewardRun:
    """One invocation of the loop, from `start_step` to `total_steps`."""

    def __init__(
        self,
        config: Config,
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

    async def train(self) -> CheckpointRecord:
        with TrainingProgress(self.total_steps, initial_step=self.start_step, desc="rm") as progress:
            for step in range(self.start_step, self.total_steps):
                metrics = await self.step(step)
                self.run.log(metrics, step=step)
                progress.update(metrics)
        if self.evaluators:
            metrics: dict[str, Any] = {}
            with timed("evals", metrics):
                metrics.update(await run_evaluators(self.evaluators, self.client))
            self.run.log(metrics, step=self.total_steps)
        state = loop_state(self.total_steps, self.n_batches)
        paths = await save_checkpoint_async(self.client, FINAL_NAME, self.config.log_path, state, kind="both")
        return CheckpointRecord.from_dict({"name": FINAL_NAME, **state, **paths})

    async def step(self, step: int) -> dict[str, Any]:
        c = self.config
        clock = StepClock()
        metrics: dict[str, Any] = {}
        if c.save_every > 0 and step != self.start_step and step % c.save_every == 0:
            with timed("save", metrics):
                await save_checkpoint_async(
                    self.client,
                    checkpoint_name(step),
                    c.log_path,
                    loop_state(step, self.n_batches),
                    kind="state",
                    ttl_seconds=c.ttl_seconds,
                )
        if self.evaluators and c.eval_every > 0 and step % c.eval_every == 0:
            with timed("evals", metrics):
                metrics.update(await run_evaluators(self.evaluators, self.client))
        epoch, batch_index = position_of_step(step, self.n_batches)
        with timed("get_batch", metrics):
            if batch_index == 0 or step == self.start_step:
                self.train_set.set_epoch(epoch)
            data = self.train_set.get_batch(batch_index)
        data = data[: len(data) // 2 * 2]  # the dataset keeps pairs whole; never send half of one
        metrics.update(num_pairs=len(data) // 2, epoch=epoch, progress=(step + 1) / self.total_steps)
        if not data:
            logger.warning("step %d: batch %d holds no complete pair; skipping it", step, batch_index)
            return metrics
        adam = c.optimizer.adam_params(step, self.total_steps)
        settings = {"margin": c.margin, "centering_coef": c.centering_coef}
        with timed("train", metrics):
            fwd_bwd = await self.client.forward_backward_async(data, "bradley_terry", settings)
            optim = await self.client.optim_step_async(adam)
            output = await fwd_bwd
            optim_out = await optim
        pairs = output.metrics["pairs:sum"]
        metrics["train/bt_loss"] = output.metrics["loss:sum"] / pairs
        metrics["train/accuracy"] = output.metrics["correct_pairs:sum"] / pairs
        metrics.update(optim_metrics(optim_out))
        metrics["learning_rate"] = adam.learning_rate
        clock.record_total(metrics)
        return metrics


async def main_async(config: Config, service_client: ServiceClient | None = None) -> CheckpointRecord:
    """Train (or resume, or continue) the reward model described by `config`; returns its "final" record."""
    run = TrainingRun(config, service_client, step_key="step")
    plan = plan_epochs(run, config)
    if isinstance(plan, CheckpointRecord):
        return plan
    async with run:
        await asyncio.to_thread(require_reward_heads, run.service)
        client = await run.create_training_client(reward_head=True)
        evaluators = build_evaluators(config.evaluator_builders)
        logger.info(plan.describe("reward model", config.model_name))
        return await _RewardRun(config, run, client, plan, evaluators).train()


def main(config: Config) -> CheckpointRecord:
    """Synchronous entry point (recipes call this); see `main_async`."""
    return asyncio.run(main_async(config))
