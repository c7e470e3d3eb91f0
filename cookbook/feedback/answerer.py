"""Answers to a question from the training server: a base model or a tinker:// checkpoint, through the SamplingClient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cookbook.client.abstract import SamplingClient, ServiceClient
from cookbook.client.types import SamplingParams
from cookbook.feedback.store import Message, NewAnswer
from cookbook.model_config import get_recommended_renderer_name
from cookbook.renderers import Renderer, get_renderer
from cookbook.tokenizer_utils import get_tokenizer

TINKER_PREFIX = "tinker://"


@dataclass(frozen=True)
class SamplingSettings:
    """How answers are sampled; stored beside each answer."""

    temperature: float = 1.0
    max_tokens: int = 64
    top_p: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "top_p": self.top_p}


class AnswerSource(Protocol):
    """What the app asks for answers: `Answerer` against a server, or a stand-in in tests."""

    model: str

    async def answer_async(
        self, messages: list[Message], n: int, seed: int | None = None
    ) -> list[NewAnswer]: ...


class Answerer:
    """Samples answers from `model` (a base model name, or a tinker:// sampler or weights path)."""

    def __init__(
        self,
        service: ServiceClient,
        model: str,
        renderer_name: str | None = None,
        settings: SamplingSettings | None = None,
    ):
        self.model = model
        self.settings = settings or SamplingSettings()
        self.sampling_client = _sampling_client(service, model)
        base_model = self.sampling_client.get_base_model()
        self.renderer_name = renderer_name or get_recommended_renderer_name(base_model)
        self.renderer: Renderer = get_renderer(self.renderer_name, get_tokenizer(base_model, service))

    async def answer_async(self, messages: list[Message], n: int, seed: int | None = None) -> list[NewAnswer]:
        """`n` sampled answers to the conversation (which ends with the user's question)."""
        stop = self.renderer.get_stop_sequences()
        params = SamplingParams(
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            stop=stop or None,
            seed=seed,
        )
        prompt = self.renderer.build_generation_prompt(messages)  # type: ignore[arg-type]
        response = await self.sampling_client.sample_async(prompt, n, params)
        sampling = {**self.settings.to_json(), "seed": seed}
        return [
            NewAnswer(
                text=str(self.renderer.parse_response(sequence.tokens)[0]["content"]).strip(),
                source=self.model,
                sampling={**sampling, "stop_reason": str(sequence.stop_reason)},
                renderer=self.renderer_name,
            )
            for sequence in response.sequences
        ]


def _sampling_client(service: ServiceClient, model: str) -> SamplingClient:
    """A base model's client, a sampler checkpoint's, or (for a training-state path) a snapshot of its weights."""
    if not model.startswith(TINKER_PREFIX):
        return service.create_sampling_client(base_model=model)
    if "/sampler_weights/" in model:
        return service.create_sampling_client(model_path=model)
    training_client = service.create_training_client_from_state(model)
    return training_client.save_weights_and_get_sampling_client()
