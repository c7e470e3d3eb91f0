"""Held-out DPO metrics: the test pairs' NLL and how the implicit reward ranks them.

One `forward` over the test pairs gives the policy's logprobs; the reference's are computed
once (the reference never changes), by `reference_sums`. Reports `<name>/nll` (mean NLL of the trained tokens, chosen
and rejected alike), `<name>/dpo_loss`, `<name>/accuracy` (pairs whose chosen log-ratio beats
the rejected one) and `<name>/margin`.
"""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.client.abstract import SamplingClient, TrainingClient
from cookbook.client.types import Datum
from cookbook.eval.evaluators import Metrics, TrainingClientEvaluator
from cookbook.preference.dpo_loss import check_pairs, dpo_loss_and_metrics, reference_sums, weighted_sums
from cookbook.supervised.common import compute_mean_nll


class DPOTestEvaluator(TrainingClientEvaluator):
    def __init__(
        self,
        data: Sequence[Datum],
        reference: SamplingClient | TrainingClient,
        beta: float,
        name: str = "test",
    ):
        check_pairs(data)
        self.data = list(data)
        self.reference = reference
        self.beta = beta
        self.name = name
        self._reference_sums: list[float] | None = None

    async def __call__(self, training_client: TrainingClient) -> Metrics:
        import torch

        if self._reference_sums is None:
            self._reference_sums = await reference_sums(self.reference, self.data)
        output = await (await training_client.forward_async(self.data, "cross_entropy"))
        logprobs = [out["logprobs"] for out in output.loss_fn_outputs]
        nll = compute_mean_nll(logprobs, [d.loss_fn_inputs["weights"] for d in self.data])
        policy = weighted_sums([lp.to_torch().double() for lp in logprobs], self.data)
        _, metrics = dpo_loss_and_metrics(
            policy, torch.tensor(self._reference_sums, dtype=torch.float64), self.beta
        )
        return {
            f"{self.name}/nll": nll,
            **{f"{self.name}/{key}": metrics[key] for key in ("dpo_loss", "accuracy", "margin")},
        }
