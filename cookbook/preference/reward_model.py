"""A scalar reward model: prompt + one answer in, one number out (the classic RLHF reward model).

The model is a training client with a reward head (the server's `reward_head` extension): its
`forward(..., "reward_score")` returns one score per datum, the head applied to the final hidden
state at the datum's last token. A datum is the whole rendered conversation (prompt + answer,
end-of-turn included), rendered by the same chat renderer as the policy's SFT data.

`RewardModel` is also a `PreferenceModel`: a comparison is judged by the Bradley-Terry probability
that B beats A, mapped to [-1, 1]: tanh((r_B - r_A) / 2) = 2 σ(r_B - r_A) - 1; so every evaluator
and env that takes a judge takes a reward model. Concurrent score requests are gathered into one
`forward` (the calls of one training client run one after another on the server, so one call for
many answers is what keeps scoring cheap).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import chz

from cookbook.client.abstract import ServiceClient, TrainingClient
from cookbook.client.types import EXTENSION_REWARD_HEAD, REWARD_SCORE_OUTPUT, Datum, ModelInput
from cookbook.preference.types import Comparison, PreferenceModel, PreferenceModelBuilder
from cookbook.renderers import Message, Renderer, TrainOnWhat, get_renderer

MAX_SCORES_PER_CALL = 256
GATHER_SECONDS = 0.005  # how long a first request waits for concurrent ones to join its call


def reward_model_input(
    prompt: Sequence[Message], completion: Sequence[Message], renderer: Renderer
) -> ModelInput:
    """The tokens a reward model scores: the rendered conversation, the answer's end of turn included."""
    model_input, _ = renderer.build_supervised_example(
        [*prompt, *completion], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    return model_input


def reward_datum(prompt: Sequence[Message], completion: Sequence[Message], renderer: Renderer) -> Datum:
    """One sequence for the reward losses (which read no loss_fn_inputs)."""
    return Datum(model_input=reward_model_input(prompt, completion, renderer), loss_fn_inputs={})


async def read_scores(client: TrainingClient, data: list[Datum]) -> list[float]:
    """The reward head's score of each datum (one forward call)."""
    output = await (await client.forward_async(data, "reward_score"))
    if len(output.loss_fn_outputs) != len(data):
        raise ValueError(f"forward returned {len(output.loss_fn_outputs)} scores for {len(data)} datums")
    return [float(out[REWARD_SCORE_OUTPUT].data[0]) for out in output.loss_fn_outputs]


class RewardModel(PreferenceModel):
    """Scores answers with a reward-head training client; judges comparisons by their score difference."""

    def __init__(self, renderer: Renderer, training_client: TrainingClient):
        self.renderer = renderer
        self.training_client = training_client
        self._pending: list[tuple[Datum, asyncio.Future[float]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def score(self, prompt: Sequence[Message], completions: Sequence[Sequence[Message]]) -> list[float]:
        """r(prompt, completion) for each completion."""
        return await self.score_data([reward_datum(prompt, c, self.renderer) for c in completions])

    async def score_data(self, data: Sequence[Datum]) -> list[float]:
        """Scores of rendered sequences, sent together with whatever other scores are asked for meanwhile."""
        loop = asyncio.get_running_loop()
        futures = []
        for datum in data:
            future: asyncio.Future[float] = loop.create_future()
            self._pending.append((datum, future))
            futures.append(future)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        return list(await asyncio.gather(*futures))

    async def _flush(self) -> None:
        await asyncio.sleep(GATHER_SECONDS)
        while self._pending:
            batch, self._pending = self._pending[:MAX_SCORES_PER_CALL], self._pending[MAX_SCORES_PER_CALL:]
            try:
                scores = await read_scores(self.training_client, [datum for datum, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), value in zip(batch, scores, strict=True):
                if not future.done():
                    future.set_result(value)

    async def __call__(self, comparison: Comparison) -> float:
        score_a, score_b = await self.score(
            comparison.prompt_conversation, [comparison.completion_A, comparison.completion_B]
        )
        return math.tanh((score_b - score_a) / 2.0)


@chz.chz
class RewardModelBuilder(PreferenceModelBuilder):
    """A reward model from a saved state (`tinker://.../weights/...`, e.g. a reward-model run's final).

    Each call opens one training client on the server from that state (its head included); build
    once and reuse the model.
    """

    renderer_name: str
    model_name: str
    rm_weights_path: str
    base_url: str | None = None

    @chz.validate
    def _check(self) -> None:
        if not self.rm_weights_path.startswith("tinker://"):
            raise ValueError(f"rm_weights_path must be a tinker:// state path, got {self.rm_weights_path!r}")

    def __call__(self) -> RewardModel:
        from cookbook.client.connection import connect

        return self.from_service(connect(self.base_url))

    def from_service(self, service: ServiceClient) -> RewardModel:
        from cookbook.tokenizer_utils import get_tokenizer

        require_reward_heads(service)
        info = service.weights_info(self.rm_weights_path)
        if not info.reward_head:
            raise ValueError(f"{self.rm_weights_path} holds no reward head: is it a reward model's state?")
        renderer = get_renderer(self.renderer_name, get_tokenizer(self.model_name, service))
        return RewardModel(renderer, service.create_training_client_from_state(self.rm_weights_path))


def require_reward_heads(service: ServiceClient) -> None:
    """A clear error for a server without the reward-head extension (Tinker's, or an older one)."""
    extensions = service.get_server_capabilities().extensions or []
    if EXTENSION_REWARD_HEAD not in extensions:
        raise RuntimeError(
            f"the server has no reward heads (its capabilities do not list {EXTENSION_REWARD_HEAD!r}); "
            "scalar reward models need this project's server"
        )
