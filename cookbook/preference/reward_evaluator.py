"""How good a scalar reward model is: does it score the chosen answer above the rejected one?

One `forward(..., "reward_score")` scores both sides of every test comparison. Metrics (prefix
`test/` unless `name` says): `accuracy` (r_chosen > r_rejected; a tie counts half), `margin` (mean r_chosen -
r_rejected), `bt_loss` (mean -log σ(margin)), each also per `kind` tag (`accuracy/<kind>`,
`margin/<kind>`: which attributes of the two answers differ), and the spread of the scores
(`score_mean`, `score_std`). Unlike a pairwise judge, a scalar model has no order to be biased by.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence

import chz
import numpy as np

from cookbook.client.abstract import TrainingClient
from cookbook.client.types import Datum
from cookbook.eval.evaluators import Metrics, TrainingClientEvaluator
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder
from cookbook.preference.evaluators import chat_renderer
from cookbook.preference.reward_datasets import reward_pair, untied
from cookbook.preference.reward_model import read_scores
from cookbook.preference.types import LabeledComparison
from cookbook.renderers import Renderer
from cookbook.supervised.common import NoTrainedTokensError
from cookbook.supervised.types import ChatDatasetBuilderCommonConfig

logger = logging.getLogger(__name__)


def bt_loss(margin: float) -> float:
    """-log σ(margin), without overflow."""
    return math.log1p(math.exp(-margin)) if margin > -30 else -margin


def _accuracy(margins: np.ndarray) -> float:
    """Pairs scored the right way round; an exact tie (e.g. a new, zero head) counts half, as a coin would."""
    return float(np.mean(np.where(margins > 0, 1.0, np.where(margins == 0, 0.5, 0.0))))


class RewardAccuracyEvaluator(TrainingClientEvaluator):
    """Accuracy and score margins of a reward-head model on labeled comparisons (ties left out)."""

    def __init__(
        self,
        comparisons: Sequence[LabeledComparison],
        renderer: Renderer,
        max_length: int | None = None,
        name: str = "test",
    ):
        self.name = name
        self.kinds: list[str | None] = []
        self.data: list[Datum] = []
        for index, labeled in enumerate(untied(list(comparisons))):
            try:
                self.data += reward_pair(labeled, renderer, max_length)
            except NoTrainedTokensError as exc:
                logger.warning("%s reward accuracy: leaving out comparison %d: %s", name, index, exc)
                continue
            self.kinds.append(labeled.kind)
        if not self.kinds:
            raise ValueError(f"RewardAccuracyEvaluator {name!r} has no comparison to score")

    async def __call__(self, training_client: TrainingClient) -> Metrics:
        return self.metrics(await read_scores(training_client, self.data))

    def metrics(self, scores: Sequence[float]) -> Metrics:
        """The metrics from the scores of [chosen_0, rejected_0, chosen_1, ...]."""
        values = np.asarray(scores, dtype=np.float64)
        margins = values[0::2] - values[1::2]
        by_kind: dict[str, list[float]] = defaultdict(list)
        for kind, margin in zip(self.kinds, margins.tolist(), strict=True):
            if kind is not None:
                by_kind[kind].append(margin)
        out: Metrics = {
            f"{self.name}/accuracy": _accuracy(margins),
            f"{self.name}/margin": float(margins.mean()),
            f"{self.name}/bt_loss": float(np.mean([bt_loss(m) for m in margins.tolist()])),
            f"{self.name}/score_mean": float(values.mean()),
            f"{self.name}/score_std": float(values.std()),
        }
        for kind, kind_margins in sorted(by_kind.items()):
            out[f"{self.name}/accuracy/{kind}"] = _accuracy(np.asarray(kind_margins))
            out[f"{self.name}/margin/{kind}"] = float(np.mean(kind_margins))
        return out


@chz.chz
class RewardAccuracyEvaluatorBuilder:
    """A `RewardAccuracyEvaluator` on the test split of `comparison_builder`."""

    common_config: ChatDatasetBuilderCommonConfig
    comparison_builder: ComparisonDatasetBuilder
    name: str = "test"
    max_comparisons: int | None = None

    def __call__(self) -> RewardAccuracyEvaluator:
        _, test = self.comparison_builder.get_labeled_comparisons()
        if test is None:
            raise ValueError(
                f"{type(self.comparison_builder).__name__} has no test split to measure accuracy on"
            )
        return RewardAccuracyEvaluator(
            test[: self.max_comparisons],
            chat_renderer(self.common_config),
            self.common_config.max_length,
            self.name,
        )
