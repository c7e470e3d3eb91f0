"""Evaluate a policy by rolling it out on an RL test set: the same environments, no training."""

from __future__ import annotations

from cookbook.client.abstract import SamplingClient
from cookbook.eval.evaluators import Metrics, SamplingClientEvaluator
from cookbook.rl.completers import SamplingClientTokenCompleter
from cookbook.rl.metrics import env_metrics
from cookbook.rl.rollouts import do_batch_rollouts
from cookbook.rl.types import EnvGroupBuilder, RLDataset


class RLTestSetEvaluator(SamplingClientEvaluator):
    """Rolls out every group of every batch of `dataset`; reports `<name>/env/all/reward/total` etc.

    The sampling seed is the same at every evaluation, so two evaluations differ only by the
    policy's weights, not by the luck of the draw.
    """

    def __init__(
        self,
        dataset: RLDataset,
        max_tokens: int,
        temperature: float = 1.0,
        name: str = "test",
        seed: int | None = 0,
    ):
        self.builders_P: list[EnvGroupBuilder] = [
            b for i in range(len(dataset)) for b in dataset.get_batch(i)
        ]
        if not self.builders_P:
            raise ValueError("the RL test set has no env groups")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.name = name
        self.seed = seed

    async def __call__(self, sampling_client: SamplingClient) -> Metrics:
        policy = SamplingClientTokenCompleter(sampling_client, self.max_tokens, self.temperature)
        groups_P = await do_batch_rollouts(self.builders_P, policy, seed=self.seed)
        metrics = env_metrics(groups_P, [builder.logging_tags() for builder in self.builders_P])
        return {f"{self.name}/{key}": value for key, value in metrics.items()}
