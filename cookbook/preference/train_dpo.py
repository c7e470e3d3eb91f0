"""The DPO loop: a client-side loss on summed sequence logprobs, through `forward_backward_custom`.

Per step: the batch's [chosen, rejected] pairs are scored by the frozen reference (one batched
`forward` of a training client that is never stepped; the next step's batch is submitted to it
as soon as this step's updates are queued, so it runs while the client waits), then
`forward_backward_custom` runs the policy forward, evaluates the DPO loss here, and sends its
gradient back as a cross_entropy pass; then `optim_step`. The loss needs the
current weights' logprobs, so steps are not pipelined (as in Tinker). `nll_coef > 0` adds the
chosen answers' NLL to the loss, which keeps the policy's samples on the data (see the recipe).

The reference is the policy's initial weights, built from the run's starting point whether the
run is fresh or resumed: `load_checkpoint_path`, or a fresh model of the same rank and seed (an
untrained LoRA adapter leaves the base unchanged). DPO from a randomly initialised model is
meaningless (the reference knows no language); start from an SFT checkpoint.

Checkpoints follow the SFT loop's (a checkpoint before step s records batch s); setup, resume,
the finished-run rule, the client and logging are `TrainingRun`'s (cookbook/utils/run.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import chz

from cookbook.client.abstract import ServiceClient, TrainingClient
from cookbook.client.types import Datum
from cookbook.eval.evaluators import Evaluator
from cookbook.eval.run import build_evaluators
from cookbook.preference.dpo_evaluator import DPOTestEvaluator
from cookbook.preference.dpo_loss import DPO_METRICS, make_dpo_loss_fn, reference_sums
from cookbook.preference.pair_loop import PairStepLoop
from cookbook.supervised.loop_config import SupervisedRunConfig
from cookbook.supervised.train import EpochPlan, optim_metrics, plan_epochs, position_of_step
from cookbook.utils.checkpoints import CheckpointRecord
from cookbook.utils.optimizer_config import OptimizerConfig, optimizer_defaults
from cookbook.utils.run import TrainingRun
from cookbook.utils.timing import timed

logger = logging.getLogger(__name__)


@chz.chz
class Config(SupervisedRunConfig):
    """One DPO run. `dataset_builder` yields [chosen, rejected] pairs (a DPODatasetBuilderFromComparisons);
    its batch size is the number of pairs per step. With `load_checkpoint_path` (e.g. an SFT run's
    final state_path) `lora_rank` must be the checkpoint's. The shared fields are `SupervisedRunConfig`'s."""

    optimizer: OptimizerConfig = optimizer_defaults(learning_rate=1e-5)
    dpo_beta: float = 0.1
    nll_coef: float = 0.0  # > 0 adds the chosen answers' NLL to the loss (see dpo_loss.make_dpo_loss_fn)

    @chz.validate
    def _check(self) -> None:
        if not self.dpo_beta > 0:
            raise ValueError(f"dpo_beta must be positive, got {self.dpo_beta}")
        if self.nll_coef < 0:
            raise ValueError(f"nll_coef must be >= 0, got {self.nll_coef}")


def pairs_of(batch: list[Datum]) -> list[Datum]:
    """The batch without a dangling last datum (a pair needs both halves)."""
    if len(batch) % 2:
        logger.warning(
            "dropping the last datum of a batch of %d: DPO needs [chosen, rejected] pairs", len(batch)
        )
    return batch[: len(batch) // 2 * 2]


@dataclass
class _ScoredBatch:
    """A step's pairs and the task computing their reference sums (None when no pair is left)."""

    step: int
    data: list[Datum]
    reference_sums: asyncio.Future[list[float]] | None


class _DPORun(PairStepLoop):
    """The DPO loop; the next step's reference sums are computed while this step's updates run."""

    config: Config
    progress_label = "dpo"

    def __init__(
        self,
        config: Config,
        run: TrainingRun,
        client: TrainingClient,
        reference: TrainingClient,
        plan: EpochPlan,
        evaluators: list[Evaluator],
    ):
        super().__init__(config, run, client, plan, evaluators)
        self.reference = reference
        self._scored: _ScoredBatch | None = None

    def _score(self, step: int) -> _ScoredBatch:
        """Step `step`'s batch with its reference sums under way."""
        data = pairs_of(self.batch_of(step))
        sums = asyncio.ensure_future(reference_sums(self.reference, data)) if data else None
        return _ScoredBatch(step, data, sums)

    async def train_step(self, step: int, metrics: dict[str, Any]) -> bool:
        c = self.config
        epoch, batch_index = position_of_step(step, self.n_batches)
        with timed("get_batch", metrics):
            scored = (
                self._scored if self._scored is not None and self._scored.step == step else self._score(step)
            )
            self._scored = None
            data = scored.data
        metrics.update(num_pairs=len(data) // 2, epoch=epoch, progress=(step + 1) / self.total_steps)
        if scored.reference_sums is None:  # every pair of the batch was dropped (e.g. cut by max_length)
            logger.warning(
                "step %d: batch %d holds no complete [chosen, rejected] pair; skipping it", step, batch_index
            )
            return False
        with timed("reference", metrics):
            reference = await scored.reference_sums
        adam = c.optimizer.adam_params(step, self.total_steps)
        loss_fn = make_dpo_loss_fn(reference, c.dpo_beta, c.nll_coef)
        with timed("train", metrics):
            fwd_bwd = await self.client.forward_backward_custom_async(data, loss_fn)
            optim = await self.client.optim_step_async(adam)
            if step + 1 < self.total_steps:
                self._scored = self._score(step + 1)
            output = await fwd_bwd
            optim_out = await optim
        metrics.update({key: output.metrics[key] for key in DPO_METRICS})
        metrics.update(optim_metrics(optim_out))
        metrics["learning_rate"] = adam.learning_rate
        return True


async def _reference(config: Config, service: ServiceClient) -> TrainingClient:
    """The run's starting weights in a model of their own, only ever scored with `forward`."""
    if config.load_checkpoint_path is not None:
        return await service.create_training_client_from_state_async(config.load_checkpoint_path)
    return await service.create_lora_training_client_async(
        config.model_name, rank=config.lora_rank, seed=config.lora_seed
    )


async def main_async(config: Config, service_client: ServiceClient | None = None) -> CheckpointRecord:
    """Train (or resume, or continue) the DPO run described by `config`; returns its "final" checkpoint record."""
    run = TrainingRun(config, service_client, step_key="step")
    plan = plan_epochs(run, config)
    if isinstance(plan, CheckpointRecord):
        return plan
    async with run:
        client = await run.create_training_client()
        reference = await _reference(config, run.service)
        evaluators = build_evaluators(config.evaluator_builders)
        test_set = plan.test_set
        test_data = (
            []
            if test_set is None
            else pairs_of([d for i in range(len(test_set)) for d in test_set.get_batch(i)])
        )
        if test_data:
            evaluators.append(DPOTestEvaluator(test_data, reference, config.dpo_beta))
        logger.info(plan.describe("DPO", config.model_name))
        loop = _DPORun(config, run, client, reference, plan, evaluators)
        return await loop.train()


def main(config: Config) -> CheckpointRecord:
    """Synchronous entry point (recipes call this); see `main_async`."""
    return asyncio.run(main_async(config))
