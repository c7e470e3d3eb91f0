"""Evaluators of the preference stages: how good is the judge, and how good is the policy.

`PreferenceAccuracyEvaluator` (preference-model training) scores the label position of every
test comparison in both orders with ONE `forward` call: each datum carries two targets at the
label position, the correct label and its rival (a (N, 2) cross_entropy target, weight on the
first), so one pass gives both logprobs. `ComparisonEvaluator` (RL, DPO) samples one policy
answer per test prompt and has a judge compare it with the data set's chosen answer in both
orders; per comparison the score is (r0 - r1 + 2) / 4 in [0, 1] (Tinker's definition), where
r0 judges (reference, policy) and r1 (policy, reference), so a judge that prefers the policy in
both orders gives 1 and a split decision 0.5.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import chz
import numpy as np

from cookbook.client.abstract import SamplingClient
from cookbook.client.types import Datum, LossFnOutput, SamplingParams, TensorData
from cookbook.eval.evaluators import Metrics, SamplingClientEvaluator
from cookbook.eval.forward_evaluator import ForwardEvaluator
from cookbook.preference.comparison_datasets import ComparisonDatasetBuilder
from cookbook.preference.comparison_renderer import ComparisonRenderer, ComparisonRendererFromChatRenderer
from cookbook.preference.gold import GoldPreferenceModel
from cookbook.preference.preference_model import build_preference_model
from cookbook.preference.reward_model import RewardModel
from cookbook.preference.types import (
    Comparison,
    LabeledComparison,
    PreferenceJudgement,
    PreferenceModel,
    PreferenceModelBuilder,
)
from cookbook.renderers import Message, Renderer, get_renderer
from cookbook.supervised.common import NoTrainedTokensError
from cookbook.supervised.types import ChatDatasetBuilder, ChatDatasetBuilderCommonConfig
from cookbook.tokenizer_utils import find_tokenizer

logger = logging.getLogger(__name__)

_RIVAL = {"A": "B", "B": "A"}


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (sample std / sqrt(n); 0 for fewer than two values)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("no values to average")
    stderr = float(array.std(ddof=1) / math.sqrt(array.size)) if array.size > 1 else 0.0
    return float(array.mean()), stderr


def chat_renderer(common_config: ChatDatasetBuilderCommonConfig) -> Renderer:
    """The renderer a chat data set with this config uses (tokenizer found or fetched the same way)."""
    return ChatDatasetBuilder(common_config=common_config).renderer


# ---------------------------------------------------------------------------------------------
# The judge's accuracy (preference-model training)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScoredOrder:
    """One comparison in one order: its datum, and what the forward pass must be read for."""

    comparison_index: int
    label: str
    kind: str | None
    datum: Datum


def _with_rival_target(datum: Datum, rival_token: int) -> Datum:
    """The datum with a second target column: the rival label at the label (last) position."""
    targets = datum.loss_fn_inputs["target_tokens"].to_numpy()
    weights = datum.loss_fn_inputs["weights"].to_numpy()
    if weights[-1] == 0 or weights[:-1].any():
        raise ValueError("a comparison datum must train exactly its last target (the label token)")
    targets_2 = np.stack([targets, targets], axis=1)
    targets_2[-1, 1] = rival_token
    weights_2 = np.stack([weights, np.zeros_like(weights)], axis=1)
    return Datum(
        model_input=datum.model_input,
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(targets_2),
            "weights": TensorData.from_numpy(weights_2),
        },
    )


class PreferenceAccuracyEvaluator(ForwardEvaluator):
    """`<name>/nll` (label-token NLL) and `<name>/accuracy` over both orders of every comparison.

    A judgement is correct when the correct label's logprob beats its rival's; ties ("Tie"
    labels) count in the NLL only. Also reports `<name>/accuracy/<kind>` per `kind` tag,
    `<name>/accuracy_both_orders` (comparisons judged right in both orders) and
    `<name>/prefers_A_frac` (how often the judge picks the first completion: 0.5 is unbiased).
    """

    def __init__(
        self,
        comparisons: Sequence[LabeledComparison],
        comparison_renderer: ComparisonRenderer,
        max_length: int | None = None,
        name: str = "test",
        report_nll: bool = True,
    ):
        self.name = name
        self.report_nll = report_nll
        self.orders: list[_ScoredOrder] = []
        for index, labeled in enumerate(comparisons):
            try:
                self.orders += [
                    self._scored(index, order, comparison_renderer, max_length)
                    for order in (labeled, labeled.swap())
                ]
            except NoTrainedTokensError as exc:
                logger.warning("%s accuracy: leaving out comparison %d: %s", name, index, exc)
        if not self.orders:
            raise ValueError(f"PreferenceAccuracyEvaluator {name!r} has no comparison to score")
        super().__init__([o.datum for o in self.orders])

    @staticmethod
    def _scored(
        index: int, labeled: LabeledComparison, renderer: ComparisonRenderer, max_length: int | None
    ) -> _ScoredOrder:
        datum = renderer.to_datum(labeled, max_length)
        rival = (
            renderer.label_token(_RIVAL[labeled.label])
            if labeled.label in _RIVAL
            else renderer.label_token(labeled.label)
        )
        return _ScoredOrder(index, labeled.label, labeled.kind, _with_rival_target(datum, rival))

    def metrics_from(self, outputs: list[LossFnOutput]) -> Metrics:
        label_lp, rival_lp = [], []
        for out in outputs:
            logprobs = out["logprobs"].to_numpy().reshape(-1, 2)
            label_lp.append(float(logprobs[-1, 0]))
            rival_lp.append(float(logprobs[-1, 1]))
        return self.metrics(label_lp, rival_lp)

    def metrics(self, label_lp: Sequence[float], rival_lp: Sequence[float]) -> Metrics:
        """The metrics from each order's (correct label, rival label) logprobs."""
        out: Metrics = {}
        if self.report_nll:
            out[f"{self.name}/nll"] = -float(np.mean(label_lp))
        correct_by_kind: dict[str, list[bool]] = defaultdict(list)
        correct_by_comparison: dict[int, list[bool]] = defaultdict(list)
        prefers_a = []
        for order, lp, rival in zip(self.orders, label_lp, rival_lp, strict=True):
            if order.label not in _RIVAL:
                continue
            correct = lp > rival
            correct_by_kind["all"].append(correct)
            if order.kind is not None:
                correct_by_kind[order.kind].append(correct)
            correct_by_comparison[order.comparison_index].append(correct)
            prefers_a.append(correct == (order.label == "A"))
        if not prefers_a:
            return out
        out[f"{self.name}/accuracy"] = float(np.mean(correct_by_kind.pop("all")))
        for kind, values in sorted(correct_by_kind.items()):
            out[f"{self.name}/accuracy/{kind}"] = float(np.mean(values))
        out[f"{self.name}/accuracy_both_orders"] = float(
            np.mean([all(v) for v in correct_by_comparison.values()])
        )
        out[f"{self.name}/prefers_A_frac"] = float(np.mean(prefers_a))
        return out


@chz.chz
class PreferenceAccuracyEvaluatorBuilder:
    """A `PreferenceAccuracyEvaluator` on the test split of `comparison_builder`."""

    common_config: ChatDatasetBuilderCommonConfig
    comparison_builder: ComparisonDatasetBuilder
    name: str = "test"
    report_nll: bool = True
    max_comparisons: int | None = None

    def __call__(self) -> PreferenceAccuracyEvaluator:
        _, test = self.comparison_builder.get_labeled_comparisons()
        if test is None:
            raise ValueError(
                f"{type(self.comparison_builder).__name__} has no test split to measure accuracy on"
            )
        renderer = ComparisonRendererFromChatRenderer(chat_renderer(self.common_config))
        return PreferenceAccuracyEvaluator(
            test[: self.max_comparisons], renderer, self.common_config.max_length, self.name, self.report_nll
        )


# ---------------------------------------------------------------------------------------------
# The policy's win rate against reference answers (RL, DPO)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PolicyAnswer:
    completion: list[Message]
    num_tokens: int
    ended_with_stop: bool


@dataclass(frozen=True)
class _Scores:
    answer: _PolicyAnswer
    hard: float | None
    soft: float | None
    gold: float | None
    reward: tuple[float, float] | None = None  # a scalar judge's scores of (policy answer, reference answer)


def _reference_prompt_pairs(
    comparisons: Sequence[Comparison | LabeledComparison],
) -> list[tuple[list[Message], list[Message]]]:
    """(prompt, reference completion): a labeled comparison's chosen completion (ties are left
    out), or completion A of a bare comparison."""
    pairs = []
    for comparison in comparisons:
        if isinstance(comparison, LabeledComparison):
            if comparison.label == "Tie":
                continue
            chosen, _ = comparison.chosen_and_rejected()
            pairs.append((comparison.comparison.prompt_conversation, chosen))
        else:
            pairs.append((comparison.prompt_conversation, comparison.completion_A))
    return pairs


def pairwise_win_score(reference_first: float, policy_first: float) -> float:
    """(r0 - r1 + 2) / 4: r0 judges (reference, policy), r1 (policy, reference); 1 = policy wins both."""
    return (reference_first - policy_first + 2.0) / 4.0


class ComparisonEvaluator(SamplingClientEvaluator):
    """Win rate of the policy's answers against the reference answers of test comparisons.

    Metrics (prefix `test/`, or `test/greedy_` at temperature 0, unless `metric_prefix` says):
    `win_rate` (hard judge labels) with `win_rate_stderr`, `win_rate_soft` with
    `win_rate_soft_stderr`, with a gold model `gold_win_rate` (ties 0.5) with its stderr, and
    `answer_tokens` (mean sampled length) and `stop_frac` (answers that ended with the stop
    sequence). With a scalar judge (a `RewardModel`) also `reward_model_score` (its mean score of the
    policy's answers) and `reward_model_score_reference` (of the reference answers). Sampling uses
    seed `seed + i` for comparison i, so successive evaluations differ by the policy, not by the
    draw. All answers are sampled concurrently, then the judge gets every comparison in one
    `judge_many` call (one forward pass for a model judge with a scorer).
    """

    def __init__(
        self,
        preference_model_builder: PreferenceModelBuilder | None,
        comparisons: Sequence[Comparison | LabeledComparison],
        renderer_name: str,
        model_name_for_tokenizer: str,
        max_tokens: int,
        temperature: float = 1.0,
        gold_model: PreferenceModel | None = None,
        seed: int | None = 0,
        metric_prefix: str | None = None,
    ):
        if preference_model_builder is None and gold_model is None:
            raise ValueError("ComparisonEvaluator needs a preference_model_builder, a gold_model, or both")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.pairs = _reference_prompt_pairs(comparisons)
        if not self.pairs:
            raise ValueError("ComparisonEvaluator needs at least one comparison with a reference answer")
        self.preference_model_builder = preference_model_builder
        self.gold_model = gold_model
        self.renderer_name = renderer_name
        self.model_name_for_tokenizer = model_name_for_tokenizer
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        default_prefix = "test/greedy_" if temperature == 0 else "test/"
        self.prefix = default_prefix if metric_prefix is None else metric_prefix
        self._preference_model: PreferenceModel | None = None
        self._renderer: Renderer | None = None

    async def _setup(self, sampling_client: SamplingClient) -> tuple[Renderer, PreferenceModel | None]:
        if self._renderer is None:
            tokenizer = find_tokenizer(self.model_name_for_tokenizer)
            if tokenizer is None:
                tokenizer = await asyncio.to_thread(sampling_client.get_tokenizer)
            self._renderer = get_renderer(self.renderer_name, tokenizer)
        if self._preference_model is None and self.preference_model_builder is not None:
            self._preference_model = await build_preference_model(self.preference_model_builder)
        return self._renderer, self._preference_model

    async def __call__(self, sampling_client: SamplingClient) -> Metrics:
        renderer, judge = await self._setup(sampling_client)
        answers = await asyncio.gather(
            *(self._answer(i, prompt, sampling_client, renderer) for i, (prompt, _) in enumerate(self.pairs))
        )
        # Per pair: (reference, policy) then (policy, reference); a model judge scores them all in one pass.
        comparisons = [
            comparison
            for (prompt, reference), answer in zip(self.pairs, answers, strict=True)
            for comparison in (
                Comparison(prompt, reference, answer.completion),
                Comparison(prompt, answer.completion, reference),
            )
        ]
        judged = await judge.judge_many(comparisons) if judge is not None else None
        scores = await asyncio.gather(
            *(
                self._score(
                    prompt,
                    reference,
                    answer,
                    comparisons[2 * i : 2 * i + 2],
                    None if judged is None else judged[2 * i : 2 * i + 2],
                    judge,
                )
                for i, ((prompt, reference), answer) in enumerate(zip(self.pairs, answers, strict=True))
            )
        )
        return self.metrics(scores)

    async def _answer(
        self, index: int, prompt: list[Message], sampling_client: SamplingClient, renderer: Renderer
    ) -> _PolicyAnswer:
        stop = renderer.get_stop_sequences()
        params = SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stop=stop or None,
            seed=None if self.seed is None else self.seed + index,
        )
        response = await sampling_client.sample_async(renderer.build_generation_prompt(prompt), 1, params)
        tokens = response.sequences[0].tokens
        message, termination = renderer.parse_response(tokens)
        return _PolicyAnswer([message], len(tokens), termination.is_stop_sequence)

    async def _score(
        self,
        prompt: list[Message],
        reference: list[Message],
        answer: _PolicyAnswer,
        comparisons: Sequence[Comparison],
        judged: Sequence[PreferenceJudgement] | None,
        judge: PreferenceModel | None,
    ) -> _Scores:
        """One pair's scores from the judge's verdicts on `comparisons`: (reference, policy), (policy, reference)."""
        policy_second, policy_first = comparisons
        hard = soft = gold = None
        if judged is not None:
            j0, j1 = judged
            hard, soft = pairwise_win_score(j0.hard, j1.hard), pairwise_win_score(j0.soft, j1.soft)
        if self.gold_model is not None:
            gold = pairwise_win_score(
                await self.gold_model(policy_second), await self.gold_model(policy_first)
            )
        reward = None
        if isinstance(judge, RewardModel):
            policy_score, reference_score = await judge.score(prompt, [answer.completion, reference])
            reward = (policy_score, reference_score)
        return _Scores(answer, hard, soft, gold, reward)

    def metrics(self, scores: Sequence[_Scores]) -> Metrics:
        p = self.prefix
        out: Metrics = {}
        for name, values in (
            ("win_rate", [s.hard for s in scores]),
            ("win_rate_soft", [s.soft for s in scores]),
            ("gold_win_rate", [s.gold for s in scores]),
        ):
            present = [v for v in values if v is not None]
            if present:
                out[f"{p}{name}"], out[f"{p}{name}_stderr"] = mean_and_stderr(present)
        rewards = [s.reward for s in scores if s.reward is not None]
        if rewards:  # a scalar judge: its scores beside the win rates (reward hacking shows as a gap)
            out[f"{p}reward_model_score"] = float(np.mean([policy for policy, _ in rewards]))
            out[f"{p}reward_model_score_reference"] = float(np.mean([reference for _, reference in rewards]))
        out[f"{p}answer_tokens"] = float(np.mean([s.answer.num_tokens for s in scores]))
        out[f"{p}stop_frac"] = float(np.mean([s.answer.ended_with_stop for s in scores]))
        return out


@chz.chz
class ComparisonEvaluatorBuilder:
    """A `ComparisonEvaluator` on the first `num_comparisons` test comparisons of `comparison_builder`.

    `gold=True` adds the bundled data's gold judge (`test/gold_win_rate`); it understands only
    the bundled tasks' prompts.
    """

    comparison_builder: ComparisonDatasetBuilder
    renderer_name: str
    model_name_for_tokenizer: str
    max_tokens: int
    preference_model_builder: PreferenceModelBuilder | None = None
    temperature: float = 1.0
    num_comparisons: int | None = None
    gold: bool = False
    seed: int | None = 0
    metric_prefix: str | None = None

    def __call__(self) -> ComparisonEvaluator:
        _, test = self.comparison_builder.get_labeled_comparisons()
        if test is None:
            raise ValueError(f"{type(self.comparison_builder).__name__} has no test split to evaluate on")
        return ComparisonEvaluator(
            self.preference_model_builder,
            test[: self.num_comparisons],
            self.renderer_name,
            self.model_name_for_tokenizer,
            self.max_tokens,
            self.temperature,
            GoldPreferenceModel() if self.gold else None,
            self.seed,
            self.metric_prefix,
        )
