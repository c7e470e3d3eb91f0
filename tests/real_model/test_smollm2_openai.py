"""The official `openai` client against the server serving SmolLM2: greedy answers equal transformers'
`generate` on the model's own chat template, streamed or not, for the base and for a trained sampler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import openai
import pytest
import torch

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.tokenizer_utils import Tokenizer

from .conftest import SERVED_NAME

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def chat(smollm2_server: LocalServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{smollm2_server.url}/v1", api_key="unused-without-a-server-key")
    yield client
    client.close()


@pytest.fixture(scope="module")
def prompt(reference_tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """transformers' rendering of the question with the model's chat template."""
    text = reference_tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    return reference_tokenizer.encode(text, add_special_tokens=False)


def _answer_text(tokens: list[int], tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """(text, OpenAI finish_reason) of greedy tokens: a turn ends at the EOS, which is not part of it."""
    if tokens and tokens[-1] == tokenizer.eos_token_id:
        return tokenizer.decode(tokens[:-1]), "stop"
    return tokenizer.decode(tokens), "length"


def test_models_lists_the_served_model(chat: openai.OpenAI) -> None:
    assert SERVED_NAME in [model.id for model in chat.models.list()]


def test_greedy_answers_equal_transformers_generate(
    chat: openai.OpenAI,
    prompt: list[int],
    reference_model: PreTrainedModel,
    reference_tokenizer: PreTrainedTokenizerBase,
) -> None:
    eos = reference_tokenizer.eos_token_id
    with torch.no_grad():
        generated = reference_model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False,
            max_new_tokens=MAX_TOKENS,
            eos_token_id=eos,
            pad_token_id=eos,
        )
    expected, finish = _answer_text(generated[0, len(prompt) :].tolist(), reference_tokenizer)
    assert "Paris" in expected

    settings = {"model": SERVED_NAME, "messages": QUESTION, "temperature": 0, "max_tokens": MAX_TOKENS}
    reply = chat.chat.completions.create(**settings)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason == finish
    assert reply.usage is not None and reply.usage.prompt_tokens == len(prompt)

    chunks = list(chat.chat.completions.create(**settings, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        finish
    ]


def test_a_trained_sampler_path_is_a_model(
    chat: openai.OpenAI,
    smollm2_service: HttpServiceClient,
    smollm2_tokenizer: Tokenizer,
    trained_lora_sampler_path: str,
    prompt: list[int],
    reference_tokenizer: PreTrainedTokenizerBase,
) -> None:
    sampler = smollm2_service.create_sampling_client(model_path=trained_lora_sampler_path)
    params = types.SamplingParams(
        max_tokens=MAX_TOKENS, temperature=0.0, stop=[smollm2_tokenizer.eos_token_id]
    )
    native = sampler.sample(types.ModelInput.from_ints(prompt), 1, params).result().sequences[0].tokens
    expected, finish = _answer_text(native, reference_tokenizer)

    reply = chat.chat.completions.create(
        model=trained_lora_sampler_path, messages=QUESTION, temperature=0, max_tokens=MAX_TOKENS
    )
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == (expected, finish)
