"""Pairwise self-play preference envs: matchups, reward arithmetic, penalties, concurrency, data.

Reward arithmetic is checked with the bundled data's gold judge (a real, deterministic
preference model); the server-backed judge and sampler are checked on the built-in model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cookbook.client.abstract import ServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.preference import (
    Comparison,
    ComparisonRendererFromChatRenderer,
    GoldPreferenceModel,
    GoldPreferenceModelBuilder,
    PreferenceModel,
    PreferenceModelFromChatRenderer,
)
from cookbook.recipes.preference.datasets import HHHComparisonBuilder
from cookbook.renderers import Message, Renderer, get_renderer
from cookbook.rl.completers import SamplingClientTokenCompleter
from cookbook.rl.preference_envs import (
    PairwisePreferenceDataset,
    PairwisePreferenceGroupBuilder,
    PairwisePreferenceRLDatasetBuilder,
    PreferenceEnv,
)
from cookbook.rl.rollouts import do_group_rollout
from cookbook.rl.tournament import (
    NO_MATCHUP_WIN_FRACTION,
    TournamentPattern,
    get_pairs,
    get_pairs_chunked,
    win_fractions,
)
from cookbook.rl.types import Trajectory
from cookbook.tokenizer_utils import Tokenizer

from .builders import trajectory, turn

BOTH = TournamentPattern.ALL_PAIRS_BOTH_WAYS
ONE = TournamentPattern.ALL_PAIRS_ONE_WAY
PROMPT: list[Message] = [{"role": "user", "content": "What is 3 plus 4?"}]


@pytest.fixture(scope="module")
def tokenizer(builtin_tokenizer: Tokenizer) -> Tokenizer:
    return builtin_tokenizer


@pytest.fixture(scope="module")
def renderer(tokenizer: Tokenizer) -> Renderer:
    return get_renderer("role_colon", tokenizer)


def answer_trajectory(renderer: Renderer, text: str, stopped: bool = True) -> Trajectory:
    """A one-turn trajectory whose sampled tokens spell ` text` (+ the stop sequence if `stopped`)."""
    tokens = renderer.tokenizer.encode(" " + text + ("\n\nUser:" if stopped else ""))
    ob = renderer.build_generation_prompt(PROMPT).to_ints()
    return trajectory(turn(ob, tokens, stop_reason="stop" if stopped else "length"))


class CountingJudge(PreferenceModel):
    """Wraps a real judge; records every comparison and the most calls ever in flight at once."""

    def __init__(self, inner: PreferenceModel):
        self.inner = inner
        self.calls: list[Comparison] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, comparison: Comparison) -> float:
        self.calls.append(comparison)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)  # a sequential caller would finish this call before starting the next
        try:
            return await self.inner(comparison)
        finally:
            self.in_flight -= 1


class PrefersFirstSlot(PreferenceModel):
    """A judge with a pure position bias: it always says A is better."""

    async def __call__(self, comparison: Comparison) -> float:
        return -1.0


def group_builder(
    renderer: Renderer, judge: PreferenceModel, n: int, pattern: TournamentPattern = BOTH, **kwargs: object
) -> PairwisePreferenceGroupBuilder:
    return PairwisePreferenceGroupBuilder(
        convo_prefix=PROMPT,
        policy_renderer=renderer,
        tournament_pattern=pattern,
        preference_model=judge,
        num_envs=n,
        **kwargs,
    )  # type: ignore[arg-type]


# -- matchups ------------------------------------------------------------------------------------


def test_all_pairs_both_ways_is_every_ordered_pair_and_one_way_every_pair_once() -> None:
    assert get_pairs(3, BOTH) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert get_pairs(3, ONE) == [(0, 1), (0, 2), (1, 2)]
    assert len(get_pairs(4, BOTH)) == 12 and len(get_pairs(4, ONE)) == 6
    assert get_pairs(1, BOTH) == [] and get_pairs(0, ONE) == []
    assert get_pairs(2, "all_pairs_one_way") == [(0, 1)]  # type: ignore[arg-type]


def test_chunked_pairs_stay_within_consecutive_chunks() -> None:
    pairs = get_pairs_chunked(8, BOTH, chunk_size=4)
    assert len(pairs) == 24
    assert all(i // 4 == j // 4 for i, j in pairs)
    assert get_pairs_chunked(4, BOTH, chunk_size=4) == get_pairs(4, BOTH)
    assert get_pairs_chunked(6, ONE, chunk_size=4) == [*get_pairs(4, ONE), (4, 5)]
    assert get_pairs_chunked(5, BOTH, chunk_size=4) == get_pairs(4, BOTH)  # the last player has no partner
    assert get_pairs_chunked(4, BOTH, chunk_size=100) == get_pairs(4, BOTH)


def test_bad_tournament_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        get_pairs_chunked(4, BOTH, chunk_size=0)
    with pytest.raises(ValueError, match="players"):
        get_pairs(-1, BOTH)
    with pytest.raises(ValueError, match="not a valid TournamentPattern"):
        get_pairs(3, "round_robin")  # type: ignore[arg-type]


# -- reward arithmetic -------------------------------------------------------------------------


def test_win_fractions_average_the_win_probability_over_each_players_matchups() -> None:
    # P(B wins) = (1 + v) / 2: v=-1 -> A wins, v=0.5 -> B wins with 0.75, v=0 -> even.
    fractions, counts = win_fractions(3, [(0, 1), (1, 2), (2, 0)], [-1.0, 0.5, 0.0])
    assert counts == [2, 2, 2]
    assert fractions == pytest.approx([(1.0 + 0.5) / 2, (0.0 + 0.25) / 2, (0.75 + 0.5) / 2])


def test_win_fractions_of_players_without_matchups_are_even_and_bad_input_is_named() -> None:
    assert win_fractions(1, [], []) == ([NO_MATCHUP_WIN_FRACTION], [0])
    with pytest.raises(ValueError, match="2 matchups but 1 judgements"):
        win_fractions(2, [(0, 1), (1, 0)], [0.0])
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        win_fractions(2, [(0, 1)], [1.5])
    with pytest.raises(ValueError, match="not a pair"):
        win_fractions(2, [(0, 2)], [0.0])


def test_gold_judged_rewards_are_win_fractions_plus_the_format_penalty(renderer: Renderer) -> None:
    # Gold scores: polite correct 4, plain correct 3, wrong 0, and a correct answer cut off
    # before the stop sequence (content scored 3, but it gets the format penalty).
    trajectories = [
        answer_trajectory(renderer, "Sure! 3 plus 4 is 7."),
        answer_trajectory(renderer, "3 plus 4 is 7."),
        answer_trajectory(renderer, "3 plus 4 is 8."),
        answer_trajectory(renderer, "3 plus 4 is 7.", stopped=False),
    ]
    judge = CountingJudge(GoldPreferenceModel())
    builder = group_builder(renderer, judge, 4)
    results = asyncio.run(builder.compute_group_rewards(trajectories, []))

    rewards = [r for r, _ in results]
    assert rewards == pytest.approx([1.0, 0.5, 0.0, 0.5 - 1.0])
    assert [m["win_fraction"] for _, m in results] == pytest.approx([1.0, 0.5, 0.0, 0.5])
    assert [m["format"] for _, m in results] == [1.0, 1.0, 1.0, 0.0]
    assert len(judge.calls) == 12  # every ordered pair
    first = judge.calls[0]
    assert first.prompt_conversation == PROMPT
    assert first.completion_A == [{"role": "assistant", "content": "Sure! 3 plus 4 is 7."}]
    assert first.completion_B == [{"role": "assistant", "content": "3 plus 4 is 7."}]


def test_format_penalty_is_configurable(renderer: Renderer) -> None:
    trajectories = [
        answer_trajectory(renderer, "3 plus 4 is 7."),
        answer_trajectory(renderer, "3 plus", stopped=False),
    ]
    builder = group_builder(renderer, GoldPreferenceModel(), 2, format_penalty=-0.25)
    results = asyncio.run(builder.compute_group_rewards(trajectories, []))
    assert [r for r, _ in results] == pytest.approx([1.0, 0.0 - 0.25])


def test_one_way_tournament_halves_the_judge_calls_and_both_ways_cancels_a_position_bias(
    renderer: Renderer,
) -> None:
    texts = ["Sure! 3 plus 4 is 7.", "3 plus 4 is 7.", "3 plus 4 is 8."]
    trajectories = [answer_trajectory(renderer, t) for t in texts]
    judge = CountingJudge(GoldPreferenceModel())
    one_way = asyncio.run(group_builder(renderer, judge, 3, ONE).compute_group_rewards(trajectories, []))
    assert len(judge.calls) == 3
    assert [r for r, _ in one_way] == pytest.approx([1.0, 0.5, 0.0])  # the gold rule has no position bias

    both = asyncio.run(
        group_builder(renderer, PrefersFirstSlot(), 3, BOTH).compute_group_rewards(trajectories, [])
    )
    assert [r for r, _ in both] == pytest.approx([0.5, 0.5, 0.5])
    biased = asyncio.run(
        group_builder(renderer, PrefersFirstSlot(), 3, ONE).compute_group_rewards(trajectories, [])
    )
    assert [r for r, _ in biased] == pytest.approx([1.0, 0.5, 0.0])


class ListCountingJudge(CountingJudge):
    """Also counts `preferences` calls (a model judge scores each such list in one pass)."""

    def __init__(self, inner: PreferenceModel):
        super().__init__(inner)
        self.lists: list[int] = []

    async def preferences(self, comparisons: Sequence[Comparison]) -> list[float]:
        self.lists.append(len(comparisons))
        return await super().preferences(comparisons)


def test_a_batch_of_groups_is_judged_in_one_call_with_the_rewards_of_each_group_alone(
    renderer: Renderer,
) -> None:
    texts = [
        ["Sure! 3 plus 4 is 7.", "3 plus 4 is 7.", "3 plus 4 is 8."],
        ["3 plus 4 is 8.", "Ugh, fine. 3 plus 4 is 7."],
        ["3 plus 4 is 7."],
        ["3 plus 4 is 7.", "3 plus", "Of course! 3 plus 4 is 7."],
    ]
    trajectories_P = [
        [answer_trajectory(renderer, t, stopped=t != "3 plus") for t in group] for group in texts
    ]
    judge = ListCountingJudge(GoldPreferenceModel())
    builders = [group_builder(renderer, judge, len(group)) for group in texts]
    together = asyncio.run(
        PairwisePreferenceGroupBuilder.compute_batch_rewards(builders, trajectories_P, [[] for _ in texts])
    )
    assert judge.lists == [6 + 2 + 0 + 6]  # one call, every group's ordered pairs in batch order
    alone = [
        asyncio.run(builder.compute_group_rewards(trajectories, []))
        for builder, trajectories in zip(builders, trajectories_P, strict=True)
    ]
    assert together == alone


def test_a_group_of_one_gets_even_odds_without_asking_the_judge(renderer: Renderer) -> None:
    judge = CountingJudge(GoldPreferenceModel())
    results = asyncio.run(
        group_builder(renderer, judge, 1).compute_group_rewards(
            [answer_trajectory(renderer, "3 plus 4 is 7.")], []
        )
    )
    assert results == [(NO_MATCHUP_WIN_FRACTION, {"win_fraction": NO_MATCHUP_WIN_FRACTION, "format": 1.0})]
    assert judge.calls == []


def test_all_of_a_groups_judgements_are_in_flight_together(renderer: Renderer) -> None:
    trajectories = [answer_trajectory(renderer, t) for t in ("7.", "3 plus 4 is 7.", "Ugh, fine. 7.", "8.")]
    judge = CountingJudge(GoldPreferenceModel())
    asyncio.run(group_builder(renderer, judge, 4).compute_group_rewards(trajectories, []))
    assert judge.max_in_flight == 12


def test_chunked_matchups_limit_the_judge_calls_of_a_large_group(renderer: Renderer) -> None:
    trajectories = [answer_trajectory(renderer, "3 plus 4 is 7.") for _ in range(8)]
    judge = CountingJudge(GoldPreferenceModel())
    results = asyncio.run(
        group_builder(renderer, judge, 8, matchup_group_size=4).compute_group_rewards(trajectories, [])
    )
    assert len(judge.calls) == 24  # two chunks of 4, 12 ordered pairs each (not 56)
    assert [r for r, _ in results] == pytest.approx([0.5] * 8)  # all tied


def test_group_builder_refuses_bad_settings(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="num_envs"):
        group_builder(renderer, GoldPreferenceModel(), 0)
    with pytest.raises(ValueError, match="matchup_group_size"):
        group_builder(renderer, GoldPreferenceModel(), 4, matchup_group_size=1)
    with pytest.raises(ValueError, match="one"):
        two_turns = trajectory(turn([1], [2]), turn([3], [4]))
        asyncio.run(group_builder(renderer, GoldPreferenceModel(), 1).compute_group_rewards([two_turns], []))


# -- the env -----------------------------------------------------------------------------------


def test_preference_env_observes_the_generation_prompt_and_ends_after_one_step(renderer: Renderer) -> None:
    env = PreferenceEnv(PROMPT, renderer)
    ob, stop = asyncio.run(env.initial_observation())
    assert ob.to_ints() == renderer.build_generation_prompt(PROMPT).to_ints()
    assert renderer.tokenizer.decode(ob.to_ints()).endswith("Assistant:")
    assert stop == ["\n\nUser:"]
    result = asyncio.run(env.step(renderer.tokenizer.encode(" 7.\n\nUser:")))
    assert result.reward == 0.0 and result.episode_done and result.next_observation.length == 0
    builder = group_builder(renderer, GoldPreferenceModel(), 3)
    envs = asyncio.run(builder.make_envs())
    assert len(envs) == 3 and all(isinstance(e, PreferenceEnv) and e.convo_prefix == PROMPT for e in envs)
    assert builder.logging_tags() == ["pair_pref"]


# -- data --------------------------------------------------------------------------------------


def test_dataset_batches_prompts_in_order_with_one_group_per_prompt(renderer: Renderer) -> None:
    prompts = [[{"role": "user", "content": f"What is {i} plus 1?"}] for i in range(7)]
    dataset = PairwisePreferenceDataset(
        prompts,
        batch_size=3,
        group_size=4,
        policy_renderer=renderer,
        preference_model=GoldPreferenceModel(),
        tournament_pattern=ONE,
    )
    assert len(dataset) == 2  # the 7th prompt does not fill a batch
    batch = dataset.get_batch(1)
    assert [b.convo_prefix for b in batch] == prompts[3:6]
    assert all(b.num_envs == 4 and b.tournament_pattern is ONE for b in batch)
    with pytest.raises(IndexError):
        dataset.get_batch(2)
    with pytest.raises(ValueError, match="do not fill one batch"):
        PairwisePreferenceDataset(prompts[:2], 3, 4, renderer, GoldPreferenceModel())


# -- against the server: the real tokenizer fetch, the real sampler, a model-based judge --------


def test_dataset_builder_reads_train_prompts_and_builds_its_judge(server: LocalServer) -> None:
    comparisons = HHHComparisonBuilder(dataset="bundled", test_size=50)
    builder = PairwisePreferenceRLDatasetBuilder(
        comparison_builder=comparisons,
        batch_size=8,
        policy_renderer_name="role_colon",
        policy_model_name="tiny-llama",
        group_size=4,
        preference_model_builder=GoldPreferenceModelBuilder(),
        base_url=server.url,
        audit_model_builder=GoldPreferenceModelBuilder(),
    )
    dataset, test = asyncio.run(builder())
    train, _ = comparisons.get_labeled_comparisons()
    assert test is None and len(dataset) == len(train) // 8
    batch = dataset.get_batch(0)
    assert [b.convo_prefix for b in batch] == [c.comparison.prompt_conversation for c in train[:8]]
    assert isinstance(batch[0].preference_model, GoldPreferenceModel)
    audit = batch[0].audit
    assert audit is not None and isinstance(audit.model, GoldPreferenceModel) and audit.kind_of is not None
    shuffled = PairwisePreferenceRLDatasetBuilder(
        comparison_builder=comparisons,
        batch_size=8,
        policy_renderer_name="role_colon",
        policy_model_name="tiny-llama",
        group_size=4,
        preference_model_builder=GoldPreferenceModelBuilder(),
        shuffle_seed=1,
        base_url=server.url,
    )
    assert sorted(map(str, shuffled.prompts())) == sorted(map(str, builder.prompts()))
    assert shuffled.prompts() != builder.prompts()
    with pytest.raises(ValueError, match="group_size"):
        PairwisePreferenceRLDatasetBuilder(
            comparison_builder=comparisons,
            batch_size=8,
            policy_renderer_name="role_colon",
            policy_model_name="tiny-llama",
            group_size=0,
            preference_model_builder=GoldPreferenceModelBuilder(),
        )


def test_model_judged_tournament_hands_out_exactly_one_win_per_matchup(
    service: ServiceClient, renderer: Renderer
) -> None:
    """With a soft judge (the untrained model's label probabilities), both-ways win fractions
    average exactly 1/2, and each reward matches the judge's own answers."""
    judge_client = service.create_sampling_client(base_model="tiny-llama")
    judge = PreferenceModelFromChatRenderer(ComparisonRendererFromChatRenderer(renderer), judge_client)
    counting = CountingJudge(judge)
    texts = ["Sure! 3 plus 4 is 7.", "7.", "Ugh, fine. 3 plus 4 is 8.", "tree tree"]
    trajectories = [answer_trajectory(renderer, t) for t in texts]
    results = asyncio.run(group_builder(renderer, counting, 4).compute_group_rewards(trajectories, []))
    fractions = [m["win_fraction"] for _, m in results]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert sum(fractions) / 4 == pytest.approx(0.5)
    assert len(set(round(f, 6) for f in fractions)) > 1  # the judge does tell the answers apart
    assert counting.max_in_flight == 12

    async def direct() -> list[float]:
        return list(await asyncio.gather(*(judge(c) for c in counting.calls)))

    values = asyncio.run(direct())
    pairs = get_pairs(4, BOTH)
    expected, _ = win_fractions(4, pairs, values)
    assert fractions == pytest.approx(expected, abs=1e-5)


def test_rollout_with_the_real_sampler_scores_every_answer(
    service: ServiceClient, renderer: Renderer
) -> None:
    """Sampled tokens come back untouched; answers cut off by max_tokens get the format penalty."""
    policy = SamplingClientTokenCompleter(
        service.create_sampling_client(base_model="tiny-llama"), max_tokens=6
    )
    builder = group_builder(renderer, GoldPreferenceModel(), 4)
    group = asyncio.run(do_group_rollout(builder, policy, seed=3))
    assert len(group.trajectories_G) == 4
    for traj, reward, metrics in zip(
        group.trajectories_G, group.final_rewards_G, group.metrics_G, strict=True
    ):
        assert traj.transitions[0].ob.to_ints() == renderer.build_generation_prompt(PROMPT).to_ints()
        _, termination = renderer.parse_response(traj.transitions[0].ac.tokens)
        assert metrics["format"] == float(termination.is_stop_sequence)
        assert reward == pytest.approx(metrics["win_fraction"] - (1.0 - metrics["format"]))
        assert 0.0 <= metrics["win_fraction"] <= 1.0
