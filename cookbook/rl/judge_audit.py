"""How often the RL reward's judge agrees with a trusted audit judge on the policy's own answers.

A preference model learns from a data set's comparisons, but RL asks it about the policy's
samples, whose differences can be of another kind (a tiny policy's own mistakes rarely look like
the data's wrong answers). Judging the same matchups with an audit judge (the bundled data's gold
rule) measures the reward's accuracy where it counts, during training: `judge_agreement`, and
`judge_agreement/<kind>` per kind of difference when the audit names kinds (correctness, style, ...).
A judge at 0.5 on a kind gives RL no signal about it, however well it scored on its test set.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cookbook.preference.gold import GoldPreferenceModel, comparison_kind
from cookbook.preference.types import Comparison, PreferenceModel

AGREEMENT_KEY = "judge_agreement"


def agreement(judged: float, truth: float) -> float:
    """1 when the judge picks the audit's winner, 0 when it picks the loser, 0.5 for a judge's tie."""
    if judged == 0:
        return 0.5
    return float((judged > 0) == (truth > 0))


@dataclass(frozen=True)
class JudgeAudit:
    """An audit judge and, optionally, a namer of what two answers differ in."""

    model: PreferenceModel
    kind_of: Callable[[Comparison], str] | None = None

    @classmethod
    def of(cls, model: PreferenceModel) -> JudgeAudit:
        """The gold rule also names the kind of each difference; other audit judges do not."""
        return cls(model, comparison_kind if isinstance(model, GoldPreferenceModel) else None)

    async def episode_metrics(
        self,
        n_episodes: int,
        pairs: Sequence[tuple[int, int]],
        comparisons: Sequence[Comparison],
        judged: Sequence[float],
    ) -> list[dict[str, float]]:
        """Per episode, the judge's agreement with the audit over the episode's matchups that the
        audit does not call a tie (an episode with none reports nothing)."""
        if not len(pairs) == len(comparisons) == len(judged):
            raise ValueError(
                f"{len(pairs)} matchups, {len(comparisons)} comparisons, {len(judged)} judgements"
            )
        truths = await asyncio.gather(*(self.model(c) for c in comparisons))
        values: list[dict[str, list[float]]] = [defaultdict(list) for _ in range(n_episodes)]
        for (i, j), comparison, value, truth in zip(pairs, comparisons, judged, truths, strict=True):
            if truth == 0:
                continue
            score = agreement(value, truth)
            keys = [AGREEMENT_KEY]
            if self.kind_of is not None:
                keys.append(f"{AGREEMENT_KEY}/{self.kind_of(comparison)}")
            for episode in (i, j):
                for key in keys:
                    values[episode][key].append(score)
        return [{key: float(np.mean(v)) for key, v in episode.items()} for episode in values]
