"""Test-set negative log-likelihood, measured through the training client.

One `forward` call over the whole test set: it queues behind the steps already submitted, so
the number describes exactly the weights after those steps, and it never touches gradients.
A loop may submit its next steps before reading it (`ForwardEvaluator.submit`).
"""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.client.types import Datum, LossFnOutput
from cookbook.eval.evaluators import Metrics
from cookbook.eval.forward_evaluator import ForwardEvaluator
from cookbook.supervised.common import compute_mean_nll
from cookbook.supervised.types import SupervisedDataset


class NLLEvaluator(ForwardEvaluator):
    """`<name>/nll`: the weighted mean NLL over the trained tokens of a fixed set of Datums.

    With "mean"-reduced Datums (each example's weights sum to 1) this is the average over
    examples of each example's per-token NLL, the same quantity `train_mean_nll` reports.
    """

    def __init__(self, data: Sequence[Datum], name: str = "test"):
        if not data:
            raise ValueError(f"NLLEvaluator {name!r} needs at least one Datum")
        for i, datum in enumerate(data):
            if "weights" not in datum.loss_fn_inputs or "target_tokens" not in datum.loss_fn_inputs:
                raise ValueError(
                    f"NLLEvaluator {name!r}: data[{i}] needs 'target_tokens' and 'weights' "
                    f"loss inputs, has {sorted(datum.loss_fn_inputs)}"
                )
        super().__init__(data)
        self.name = name

    @classmethod
    def from_dataset(cls, dataset: SupervisedDataset, name: str = "test") -> NLLEvaluator:
        """Every batch of `dataset`, in its current order, as one evaluation set."""
        data = [datum for i in range(len(dataset)) for datum in dataset.get_batch(i)]
        return cls(data, name=name)

    def metrics_from(self, outputs: list[LossFnOutput]) -> Metrics:
        logprobs = [out["logprobs"] for out in outputs]
        weights = [datum.loss_fn_inputs["weights"] for datum in self.data]
        return {f"{self.name}/nll": compute_mean_nll(logprobs, weights)}
