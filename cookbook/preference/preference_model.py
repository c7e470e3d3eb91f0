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
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Literal

import chz

from cookbook.client.abstract import SamplingClient, ServiceClient
from cookbook.client.types import SampleResponse, SamplingParams
from cookbook.preference.comparison_renderer import ComparisonRenderer, ComparisonRendererFromChatRenderer
from cookbook.preference.types import Comparison, PreferenceJudgement, PreferenceModel, PreferenceModelBuilder
from cookbook.renderers import get_renderer

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


class PreferenceModelFromChatRenderer(PreferenceModel):
    """A judge model behind `sampling_client`; `scoring` picks what `__call__` returns."""

    def __init__(
        self,
        comparison_renderer: ComparisonRenderer,
        sampling_client: SamplingClient,
        scoring: Scoring = "soft",
        topk: int = DEFAULT_TOPK,
    ):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        if topk < 2:
            raise ValueError(f"topk must be at least 2 (both labels must fit), got {topk}")
        self.comparison_renderer = comparison_renderer
        self.sampling_client = sampling_client
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
        dist = await self.label_distribution(comparison)
        if dist.b_is_bound:
            self.bounded_judgements += 1
        return PreferenceJudgement(
            soft=soft_score(dist.logprob_a, dist.logprob_b), hard=self._hard_label(dist.greedy_token)
        )

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
        return PreferenceModelFromChatRenderer(renderer, sampling_client, self.scoring, self.topk)


async def build_preference_model(builder: PreferenceModelBuilder) -> PreferenceModel:
    """Run a (blocking) builder off the event loop."""
    return await asyncio.to_thread(builder)
