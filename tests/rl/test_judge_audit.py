"""The RL judge's agreement with an audit judge (the bundled data's gold rule) on a group's answers."""

from __future__ import annotations

import asyncio

import pytest

from cookbook.preference import Comparison, GoldPreferenceModel, PreferenceModel
from cookbook.renderers import Renderer, get_renderer
from cookbook.rl.judge_audit import AGREEMENT_KEY, JudgeAudit, agreement
from cookbook.rl.tournament import TournamentPattern, get_pairs
from cookbook.tokenizer_utils import Tokenizer

from .test_preference_envs import PROMPT, PrefersFirstSlot, answer_trajectory, group_builder

BEST, PLAIN, WRONG = "Sure! 3 plus 4 is 7.", "3 plus 4 is 7.", "3 plus 4 is 8."


class Contrarian(PreferenceModel):
    """The gold rule's judgement, reversed: a judge that is always wrong."""

    async def __call__(self, comparison: Comparison) -> float:
        return -await GoldPreferenceModel()(comparison)


@pytest.fixture(scope="module")
def renderer(builtin_tokenizer: Tokenizer) -> Renderer:
    return get_renderer("role_colon", builtin_tokenizer)


def comparisons_of(texts: list[str]) -> tuple[list[tuple[int, int]], list[Comparison]]:
    pairs = get_pairs(len(texts), TournamentPattern.ALL_PAIRS_BOTH_WAYS)
    messages = [{"role": "assistant", "content": t} for t in texts]
    return pairs, [Comparison(PROMPT, [messages[i]], [messages[j]]) for i, j in pairs]


def test_agreement_counts_a_judges_tie_as_half() -> None:
    assert (agreement(0.8, 1.0), agreement(-0.1, 1.0), agreement(0.0, -1.0), agreement(-1.0, -1.0)) == (
        1,
        0,
        0.5,
        1,
    )


def test_a_judge_is_scored_per_answer_and_per_kind_of_difference() -> None:
    audit = JudgeAudit.of(GoldPreferenceModel())
    pairs, comparisons = comparisons_of([BEST, PLAIN, WRONG])
    # A judge that agrees on correctness but has the style backwards (it prefers the plain answer).
    judged = [
        (
            -1.0
            if "8" in c.completion_B[0]["content"]
            else 1.0
            if "8" in c.completion_A[0]["content"]
            else (1.0 if c.completion_B[0]["content"] == PLAIN else -1.0)
        )
        for c in comparisons
    ]
    metrics = asyncio.run(audit.episode_metrics(3, pairs, comparisons, judged))
    # BEST and PLAIN: wrong against each other (2 matchups), right against WRONG (2). WRONG: right in all 4.
    assert [m[AGREEMENT_KEY] for m in metrics] == pytest.approx([0.5, 0.5, 1.0])
    assert (
        metrics[0][f"{AGREEMENT_KEY}/style"] == 0.0
        and metrics[0][f"{AGREEMENT_KEY}/correctness+style"] == 1.0
    )
    assert (metrics[1][f"{AGREEMENT_KEY}/style"], metrics[1][f"{AGREEMENT_KEY}/correctness"]) == (0.0, 1.0)


def test_matchups_the_audit_calls_a_tie_are_left_out() -> None:
    audit = JudgeAudit(GoldPreferenceModel())  # no kind names: only the overall key
    pairs, comparisons = comparisons_of([PLAIN, PLAIN, WRONG])
    metrics = asyncio.run(audit.episode_metrics(3, pairs, comparisons, [0.3] * len(pairs)))
    # The two PLAIN answers tie by the rule; each is judged only on its matchups with WRONG.
    assert metrics == [{AGREEMENT_KEY: 0.5}, {AGREEMENT_KEY: 0.5}, {AGREEMENT_KEY: 0.5}]
    pairs, comparisons = comparisons_of([PLAIN, PLAIN])
    assert asyncio.run(audit.episode_metrics(2, pairs, comparisons, [0.3, 0.3])) == [{}, {}]
    with pytest.raises(ValueError, match="2 matchups, 2 comparisons, 1 judgements"):
        asyncio.run(audit.episode_metrics(2, pairs, comparisons, [0.3]))


@pytest.mark.parametrize(
    ("judge", "expected"), [(GoldPreferenceModel(), 1.0), (Contrarian(), 0.0), (PrefersFirstSlot(), 0.5)]
)
def test_group_rewards_carry_the_agreement_of_the_judge_that_made_them(
    renderer: Renderer, judge: PreferenceModel, expected: float
) -> None:
    trajectories = [answer_trajectory(renderer, text) for text in (BEST, PLAIN, WRONG)]
    audited = group_builder(renderer, judge, 3, audit=JudgeAudit.of(GoldPreferenceModel()))
    results = asyncio.run(audited.compute_group_rewards(trajectories, []))
    assert [m[AGREEMENT_KEY] for _, m in results] == pytest.approx([expected] * 3)
    plain = asyncio.run(group_builder(renderer, judge, 3).compute_group_rewards(trajectories, []))
    assert [r for r, _ in plain] == [r for r, _ in results]  # the audit never changes a reward
    assert all(AGREEMENT_KEY not in m for _, m in plain)
