"""A preference model served by a sampling client: a chat model that writes " A" or " B".

Tinker's original samples one greedy token and maps "A" -> -1, "B" -> +1. That hard label
throws away the judge's confidence, which matters to RL (a 51/49 call and a 99/1 call give the
same reward). Here every judgement asks the server ONE question: the judge's prompt followed by
the A-label token, with prompt logprobs and the top-k alternatives at each position. At the last
position that gives

- log P(A): the logprob of the A token we appended;
- log P(B): B's entry in that position's top-k list. When B is not among the top k, its
  probability is at most the k-th largest one, and that bound is used (the soft score is then
  a bound on the true score, nearer 0 than it; with the default k = 20 this happens only to a
  judge that puts almost no mass on either label);
- the greedy label: the top-1 token of that list, exactly what a temperature-0 sample of one
  token would write.

soft score = (P(B) - P(A)) / (P(A) + P(B)) = tanh((log P(B) - log P(A)) / 2), in [-1, 1];
hard score = -1 / +1 for a greedy A / B, 0 for a tie label or anything else (with a warning).
Concurrent judgements are independent requests, which the server batches together.

With a `scorer` (a training client holding the same weights) a list of judgements (`judge_many`,
`preferences`: an RL step's matchups, an evaluation's comparisons) is ONE `forward` call instead:
each judge prompt is a datum whose last target has two columns, A and B, so one pass gives both
labels' exact logprobs (never a top-k bound). The greedy label follows from them whenever the
likelier label has more mass than every other token together (a trained judge nearly always);
otherwise that judgement's hard label comes from the one-token sample request above.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import chz
import numpy as np

from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.client.types import Datum, ModelInput, SampleResponse, SamplingParams, TensorData
from cookbook.preference.comparison_renderer import ComparisonRenderer, ComparisonRendererFromChatRenderer
from cookbook.preference.types import Comparison, PreferenceJudgement, PreferenceModel, PreferenceModelBuilder
from cookbook.renderers import get_renderer
from cookbook.utils.forward_pieces import forward_outputs

logger = logging.getLogger(__name__)

Scoring = Literal["soft", "hard"]
SCORINGS: tuple[str, ...] = ("soft", "hard")
DEFAULT_TOPK = 20


def soft_score(logprob_a: float, logprob_b: float) -> float:
    """(P(B) - P(A)) / (P(A) + P(B)), computed from logprobs without overflow."""
    return math.tanh((logprob_b - logprob_a) / 2.0)


@dataclass(frozen=True)
class LabelDistribution:
    """What the judge's one request says about the label position."""

    logprob_a: float
    logprob_b: float
    b_is_bound: bool  # B was not in the top-k: logprob_b is an upper bound (the k-th logprob)
    greedy_token: int


def label_distribution(response: SampleResponse, a_token: int, b_token: int) -> LabelDistribution:
    """Read the label position off a response to (judge prompt + A token) with top-k prompt logprobs."""
    if not response.prompt_logprobs or response.prompt_logprobs[-1] is None:
        raise ValueError("the server returned no prompt logprob for the label position")
    if not response.topk_prompt_logprobs or not response.topk_prompt_logprobs[-1]:
        raise ValueError("the server returned no top-k prompt logprobs for the label position")
    logprob_a = float(response.prompt_logprobs[-1])
    top = response.topk_prompt_logprobs[-1]
    by_token = {int(token): float(lp) for token, lp in top}
    b_is_bound = b_token not in by_token
    logprob_b = min(float(lp) for _, lp in top) if b_is_bound else by_token[b_token]
    greedy_token = int(max(top, key=lambda pair: pair[1])[0])
    return LabelDistribution(logprob_a, logprob_b, b_is_bound, greedy_token)


def label_scoring_datum(prompt: ModelInput, a_token: int, b_token: int) -> Datum:
    """The judge's prompt as a `forward` datum whose last target has two columns: the A and B labels."""
    tokens = np.asarray(prompt.to_ints(), dtype=np.int64)
    targets_T2 = np.empty((len(tokens), 2), dtype=np.int64)
    targets_T2[:-1] = tokens[1:, None]
    targets_T2[-1] = (a_token, b_token)
    weights_T2 = np.zeros((len(tokens), 2), dtype=np.float32)
    weights_T2[-1, 0] = 1.0
    return Datum(
        model_input=prompt,
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(targets_T2),
            "weights": TensorData.from_numpy(weights_T2),
        },
    )


def greedy_label(logprob_a: float, logprob_b: float, a_token: int, b_token: int) -> int | None:
    """The argmax token when the label logprobs alone settle it (the likelier label outweighs all the
    other tokens together), else None."""
    p_a, p_b = math.exp(logprob_a), math.exp(logprob_b)
    if p_a == p_b or max(p_a, p_b) <= 1.0 - p_a - p_b:
        return None
    return a_token if p_a > p_b else b_token


class PreferenceModelFromChatRenderer(PreferenceModel):
    """A judge model behind `sampling_client` (and `scorer`, the same weights in a training client,
    which batches `judge_many`); `scoring` picks what `__call__` returns."""

    def __init__(
        self,
        comparison_renderer: ComparisonRenderer,
        sampling_client: SamplingClient,
        scoring: Scoring = "soft",
        topk: int = DEFAULT_TOPK,
        scorer: TrainingClient | None = None,
    ):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        if topk < 2:
            raise ValueError(f"topk must be at least 2 (both labels must fit), got {topk}")
        self.comparison_renderer = comparison_renderer
        self.sampling_client = sampling_client
        self.scorer = scorer
        self.scoring = scoring
        self.topk = topk
        self.a_token = comparison_renderer.label_token("A")
        self.b_token = comparison_renderer.label_token("B")
        self.tie_token = comparison_renderer.label_token("Tie")
        self.unlabelled_judgements = 0  # greedy token was none of the labels
        self.bounded_judgements = 0  # B fell outside the top-k

    async def label_distribution(self, comparison: Comparison) -> LabelDistribution:
        """One request: the judge's prompt plus the A token, scored position by position."""
        prompt = self.comparison_renderer.build_generation_prompt(comparison).append_int(self.a_token)
        response = await self.sampling_client.sample_async(
            prompt,
            num_samples=1,
            sampling_params=SamplingParams(max_tokens=1, temperature=0.0),
            include_prompt_logprobs=True,
            topk_prompt_logprobs=self.topk,
        )
        return label_distribution(response, self.a_token, self.b_token)

    async def judge(self, comparison: Comparison) -> PreferenceJudgement:
        if self.scorer is not None:
            return (await self.judge_many([comparison]))[0]
        dist = await self.label_distribution(comparison)
        if dist.b_is_bound:
            self.bounded_judgements += 1
        return PreferenceJudgement(
            soft=soft_score(dist.logprob_a, dist.logprob_b), hard=self._hard_label(dist.greedy_token)
        )

    async def judge_many(self, comparisons: Sequence[Comparison]) -> list[PreferenceJudgement]:
        """Every comparison's judgement, in order: one `forward` call with a scorer (see the module)."""
        if self.scorer is None or not comparisons:
            return await super().judge_many(comparisons)
        data = [
            label_scoring_datum(
                self.comparison_renderer.build_generation_prompt(c), self.a_token, self.b_token
            )
            for c in comparisons
        ]
        outputs = await forward_outputs(self.scorer, data, "cross_entropy")
        label_logprobs = [out["logprobs"].to_numpy().reshape(-1, 2)[-1] for out in outputs]
        settled = [greedy_label(float(a), float(b), self.a_token, self.b_token) for a, b in label_logprobs]
        unsettled = [i for i, token in enumerate(settled) if token is None]
        sampled = await asyncio.gather(*(self.label_distribution(comparisons[i]) for i in unsettled))
        greedy = {i: dist.greedy_token for i, dist in zip(unsettled, sampled, strict=True)}
        return [
            PreferenceJudgement(
                soft=soft_score(float(a), float(b)),
                hard=self._hard_label(token if token is not None else greedy[i]),
            )
            for i, ((a, b), token) in enumerate(zip(label_logprobs, settled, strict=True))
        ]

    async def preferences(self, comparisons: Sequence[Comparison]) -> list[float]:
        judgements = await self.judge_many(comparisons)
        return [j.soft if self.scoring == "soft" else j.hard for j in judgements]

    async def __call__(self, comparison: Comparison) -> float:
        judgement = await self.judge(comparison)
        return judgement.soft if self.scoring == "soft" else judgement.hard

    def _hard_label(self, token: int) -> float:
        if token == self.a_token:
            return -1.0
        if token == self.b_token:
            return 1.0
        if token != self.tie_token:
            self.unlabelled_judgements += 1
            if self.unlabelled_judgements == 1:
                text = self.comparison_renderer.tokenizer.decode([token])
                logger.warning(
                    "the preference model's greedy answer %r is not a label; scoring it as a tie "
                    "(counted in unlabelled_judgements; this warning is shown once)",
                    text,
                )
        return 0.0


@chz.chz
class PreferenceModelBuilderFromChatRenderer(PreferenceModelBuilder):
    """A judge from saved sampler weights (`tinker://.../sampler_weights/...`, e.g. an RM run's final).

    Each call connects once and opens one sampling client, shared by every judgement of the
    returned model; build once and reuse it rather than building per comparison.
    """

    renderer_name: str
    model_name: str
    rm_weights_path: str
    base_url: str | None = None
    scoring: Scoring = "soft"
    topk: int = DEFAULT_TOPK
    # Also load the weights into a training client, so that a list of judgements is one forward pass.
    batch_forward: bool = True

    @chz.validate
    def _check(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")
        if not self.rm_weights_path.startswith("tinker://"):
            raise ValueError(
                f"rm_weights_path must be a tinker:// sampler path, got {self.rm_weights_path!r}"
            )

    def __call__(self) -> PreferenceModelFromChatRenderer:
        from cookbook.client.connection import connect

        service = connect(self.base_url)
        return self.from_service(service)

    def from_service(self, service: ServiceClient) -> PreferenceModelFromChatRenderer:
        """The same judge through an existing service client."""
        from cookbook.tokenizer_utils import get_tokenizer

        tokenizer = get_tokenizer(self.model_name, service)
        renderer = ComparisonRendererFromChatRenderer(get_renderer(self.renderer_name, tokenizer))
        sampling_client = service.create_sampling_client(model_path=self.rm_weights_path)
        scorer = (
            service.create_training_client_from_state(self.rm_weights_path) if self.batch_forward else None
        )
        return PreferenceModelFromChatRenderer(renderer, sampling_client, self.scoring, self.topk, scorer)


async def build_preference_model(builder: PreferenceModelBuilder) -> PreferenceModel:
    """Run a (blocking) builder off the event loop."""
    return await asyncio.to_thread(builder)
