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

from cookbook.client.abstract import ServiceClient
from cookbook.eval.run import build_evaluators
from cookbook.preference.pair_loop import PairStepLoop
from cookbook.preference.reward_model import require_reward_heads
from cookbook.supervised.loop_config import SupervisedRunConfig
from cookbook.supervised.train import optim_metrics, plan_epochs, position_of_step
from cookbook.utils.checkpoints import CheckpointRecord
from cookbook.utils.run import TrainingRun
from cookbook.utils.timing import timed

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


class _RewardRun(PairStepLoop):
    """The reward-model loop: one Bradley-Terry step per batch of pairs."""

    config: Config
    progress_label = "rm"

    async def train_step(self, step: int, metrics: dict[str, Any]) -> bool:
        c = self.config
        epoch, batch_index = position_of_step(step, self.n_batches)
        with timed("get_batch", metrics):
            data = self.batch_of(step)
        data = data[: len(data) // 2 * 2]  # the dataset keeps pairs whole; never send half of one
        metrics.update(num_pairs=len(data) // 2, epoch=epoch, progress=(step + 1) / self.total_steps)
        if not data:
            logger.warning("step %d: batch %d holds no complete pair; skipping it", step, batch_index)
            return False
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
        return True


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
