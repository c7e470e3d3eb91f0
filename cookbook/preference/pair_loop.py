"""The loop the pair losses (DPO, Bradley-Terry) share: steps run one at a time, each awaited.

Before each step come the periodic checkpoint (the weights after `step` updates, never the one
resumed from) and the periodic evaluation; then the subclass's `train_step` fetches and trains
the batch. Fetching, evaluating and the final checkpoint are `EpochLoop`'s (the SFT loop's).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from cookbook.supervised.train import EpochLoop, checkpoint_name, loop_state
from cookbook.utils.checkpoints import CheckpointRecord, save_checkpoint_async
from cookbook.utils.progress import TrainingProgress
from cookbook.utils.timing import StepClock, timed


class PairStepLoop(EpochLoop, ABC):
    """One invocation of a pair loop, from `start_step` to `total_steps`."""

    progress_label: ClassVar[str]  # the progress bar's name

    async def train(self) -> CheckpointRecord:
        with TrainingProgress(
            self.total_steps, initial_step=self.start_step, desc=self.progress_label
        ) as progress:
            for step in range(self.start_step, self.total_steps):
                metrics = await self.step(step)
                self.run.log(metrics, step=step)
                progress.update(metrics)
        return await self.finish()

    async def step(self, step: int) -> dict[str, Any]:
        """The checkpoint and evaluation due before `step`, then the step itself."""
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
            await self.evaluate(metrics)
        if await self.train_step(step, metrics):
            clock.record_total(metrics)
        return metrics

    @abstractmethod
    async def train_step(self, step: int, metrics: dict[str, Any]) -> bool:
        """Fetch and train batch `step`, adding its metrics; False when it held no pair to train."""
