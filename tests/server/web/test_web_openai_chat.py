"""The OpenAI-compatible routes, driven by the official `openai` client against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from cookbook.client import types
from cookbook.client.abstract import ServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.renderers.role_colon import RoleColonRenderer
from cookbook.supervised.data import conversation_to_datum
from cookbook.tokenizer_utils import Tokenizer

BASE_MODEL = "tiny-llama"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "The capital of France is Paris."


@pytest.fixture(scope="module")
def chat(server: LocalServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused-without-a-server-key")
    yield client
    client.close()


def native_greedy(service: ServiceClient, tokenizer: Tokenizer, max_tokens: int, **source: str) -> list[int]:
    """The project's own sampler on the role_colon prompt: the tokens the OpenAI route must match."""
    prompt = RoleColonRenderer(tokenizer).build_generation_prompt(QUESTION)
    sampler = service.create_sampling_client(**source)
    params = types.SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=["\n\nUser:"])
    return sampler.sample(prompt, 1, params).result().sequences[0].tokens


def test_models_lists_every_base_model(chat: openai.OpenAI, server: LocalServer) -> None:
    assert [model.id for model in chat.models.list()] == [BASE_MODEL]
    capabilities = httpx.get(f"{server.url}/api/v1/get_server_capabilities").json()
    assert {"/v1/models", "/v1/chat/completions"} <= set(
        capabilities["extensions"]
    )  # exact list: test_web_routes


def test_greedy_completion_is_the_native_samplers_tokens(
    chat: openai.OpenAI, service: ServiceClient, builtin_tokenizer: Tokenizer
) -> None:
    tokens = native_greedy(service, builtin_tokenizer, 24, base_model=BASE_MODEL)
    reply = chat.chat.completions.create(
        model=BASE_MODEL, messages=QUESTION, temperature=0, max_tokens=24, logprobs=True
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    # random weights: no stop within 24 tokens; role_colon's separating space is not part of the answer
    assert choice.message.content == builtin_tokenizer.decode(tokens).removeprefix(" ")
    assert choice.finish_reason == "length"
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [bytes(t.bytes or []) for t in choice.logprobs.content] == [
        builtin_tokenizer.decode([t]).encode() for t in tokens
    ]
    prompt = RoleColonRenderer(builtin_tokenizer).build_generation_prompt(QUESTION).length
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, 24)
    assert reply.usage.total_tokens == prompt + 24


def test_streamed_deltas_join_to_the_completion(chat: openai.OpenAI) -> None:
    settings = {"model": BASE_MODEL, "messages": QUESTION, "temperature": 0.7, "seed": 5, "max_tokens": 30}
    whole = chat.chat.completions.create(**settings).choices[0]
    chunks = list(
        chat.chat.completions.create(**settings, stream=True, stream_options={"include_usage": True})
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == whole.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 30


def test_raw_stream_is_server_sent_events_ending_in_done(server: LocalServer) -> None:
    body = {"model": BASE_MODEL, "messages": QUESTION, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"


def test_n_samples_and_seed_reproduce(chat: openai.OpenAI) -> None:
    settings = {"model": BASE_MODEL, "messages": QUESTION, "n": 3, "seed": 11, "max_completion_tokens": 12}
    first = chat.chat.completions.create(**settings)
    again = chat.chat.completions.create(**settings)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]
    assert len(set(texts)) > 1  # each choice is its own draw
    assert first.usage is not None and first.usage.completion_tokens == 36


def test_stop_strings_end_the_answer_before_them(chat: openai.OpenAI) -> None:
    free = chat.chat.completions.create(model=BASE_MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    text = free.choices[0].message.content or ""
    stop = text[5:7]  # two characters the greedy answer reaches
    stopped = chat.chat.completions.create(
        model=BASE_MODEL, messages=QUESTION, temperature=0, max_tokens=40, stop=[stop, "never-seen"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(stop)]


def test_bad_model_and_params_are_openai_errors(chat: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        chat.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        chat.chat.completions.create(model="tinker://run-none/sampler_weights/x", messages=QUESTION)
    bad: list[tuple[dict[str, object], str]] = [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"stop": [""]}, "stop"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"top_logprobs": 2, "logprobs": True}, "top_logprobs"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
    ]
    for extra, param in bad:
        settings = {"model": BASE_MODEL, "messages": QUESTION} | extra
        with pytest.raises(openai.BadRequestError) as refused:
            chat.chat.completions.create(**settings)  # type: ignore[call-overload]
        assert refused.value.param == param, extra
        assert refused.value.status_code == 400


def test_a_trained_sampler_path_answers_what_it_learned(
    chat: openai.OpenAI, service: ServiceClient, builtin_tokenizer: Tokenizer
) -> None:
    renderer = RoleColonRenderer(builtin_tokenizer)
    datum = conversation_to_datum([*QUESTION, {"role": "assistant", "content": ANSWER}], renderer, None)
    trainer = service.create_lora_training_client(BASE_MODEL, rank=16)
    for _ in range(40):
        trainer.forward_backward([datum], "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=3e-3))
    path = trainer.save_weights_for_sampler("openai-chat").result().path
    tokens = native_greedy(service, builtin_tokenizer, 20, model_path=path)
    reply = chat.chat.completions.create(model=path, messages=QUESTION, temperature=0, max_tokens=20)
    assert reply.model == path
    assert reply.choices[0].message.content == ANSWER
    assert reply.choices[0].finish_reason == "stop"
    assert builtin_tokenizer.decode(tokens) == " " + ANSWER + "\n\nUser:"


def test_the_servers_key_is_required_as_bearer_or_header(tmp_path_factory: pytest.TempPathFactory) -> None:
    with LocalServer(tmp_path_factory.mktemp("openai-keyed"), api_key="sekret") as keyed:
        anonymous = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong")
        with pytest.raises(openai.AuthenticationError) as refused:
            anonymous.models.list()
        assert refused.value.code == "invalid_api_key"
        anonymous.close()
        with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="sekret") as bearer:
            reply = bearer.chat.completions.create(model=BASE_MODEL, messages=QUESTION, max_tokens=2)
            assert reply.choices[0].finish_reason == "length"
        header = httpx.get(f"{keyed.url}/v1/models", headers={"X-API-Key": "sekret"})
        assert header.status_code == 200 and header.json()["data"][0]["id"] == BASE_MODEL
        missing = httpx.get(f"{keyed.url}/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
