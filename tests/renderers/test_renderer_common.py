"""Properties every format must have: train/sample consistency, parse round trips, pickling,
no empty chunks, clear errors; and the renderer registry."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cookbook.renderers import (
    Message,
    ParseTermination,
    Renderer,
    RoleColonRenderer,
    TrainOnWhat,
    UnknownRendererError,
    get_renderer,
    recommended_renderer_name,
    register_renderer,
    renderer_names,
)
from cookbook.tokenizer_utils import Tokenizer

# renderer name -> tokenizer kind (see chat_tokenizers.FORMATS)
FORMAT_TOKENIZERS = {"role_colon": "plain", "chatml": "chatml", "llama3": "llama3", "qwen3": "qwen3"}

PREFIX: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 3 plus 4?"},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "And 2 plus 2?"},
]


@pytest.fixture(params=sorted(FORMAT_TOKENIZERS))
def renderer(request: pytest.FixtureRequest, tokenizers_by_kind: dict[str, Tokenizer]) -> Renderer:
    return get_renderer(request.param, tokenizers_by_kind[FORMAT_TOKENIZERS[request.param]])


def _sampled_answer(renderer: Renderer, answer: str) -> list[int]:
    """What a model that writes `answer` and then ends its turn produces after the prompt.

    It is what a supervised example trains after the generation prompt, which must therefore
    be a prefix of the example and carry no weight.
    """
    prompt = renderer.build_generation_prompt(PREFIX).to_ints()
    model_input, weights = renderer.build_supervised_example(
        [*PREFIX, {"role": "assistant", "content": answer}], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    tokens = model_input.to_ints()
    assert tokens[: len(prompt)] == prompt
    assert weights[: len(prompt)].sum() == 0 and (weights[len(prompt) :] == 1).all()
    return tokens[len(prompt) :]


def _stop_tokens(renderer: Renderer) -> list[int]:
    stops = renderer.get_stop_sequences()
    if all(isinstance(s, int) for s in stops):
        return [int(s) for s in stops]
    return renderer.tokenizer.encode(str(stops[0]))


@pytest.mark.parametrize("answer", ["4", "Sure! 2 plus 2 is 4.", "Line one.\nLine two."])
def test_parse_round_trip(renderer: Renderer, answer: str) -> None:
    sampled = _sampled_answer(renderer, answer)
    message, ended = renderer.parse_response(sampled)
    assert message == {"role": "assistant", "content": answer}
    assert ended is ParseTermination.STOP_SEQUENCE and ended.is_stop_sequence and ended.is_clean


def test_parse_eos_termination(renderer: Renderer) -> None:
    tok = renderer.tokenizer
    eos = tok.eos_token_id
    assert eos is not None
    answer = "2 plus 2 is 4."
    tokens = tok.encode((" " if isinstance(renderer, RoleColonRenderer) else "") + answer)
    message, ended = renderer.parse_response([*tokens, eos])
    assert message["content"] == answer
    # Where EOS is the end-of-turn token itself (Qwen3's instruct tokenizer) it is a stop.
    assert ended is (
        ParseTermination.STOP_SEQUENCE if eos in _stop_tokens(renderer) else ParseTermination.EOS
    )


def test_parse_malformed(renderer: Renderer) -> None:
    sampled = _sampled_answer(renderer, "2 plus 2 is 4.")
    stop = _stop_tokens(renderer)
    truncated = sampled[: -len(stop) - 1]  # max_tokens hit before the stop
    message, ended = renderer.parse_response(truncated)
    assert ended is ParseTermination.MALFORMED and not ended.is_clean
    assert "2 plus 2 is" in message["content"]
    # Text after the end of the turn did not come from one sampled turn.
    assert (
        renderer.parse_response([*sampled, *renderer.tokenizer.encode(" more"), *stop])[1]
        is ParseTermination.MALFORMED
    )


def test_no_empty_chunks(renderer: Renderer) -> None:
    convo: list[Message] = [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
    ]
    inputs = [
        renderer.build_generation_prompt([]),
        renderer.build_generation_prompt(convo, prefill=""),
        renderer.build_supervised_example(convo, TrainOnWhat.ALL_TOKENS)[0],
    ]
    for model_input in inputs:
        assert model_input.chunks and all(chunk.tokens for chunk in model_input.chunks)


def test_weights_match_tokens_for_every_mode(renderer: Renderer) -> None:
    convo = [*PREFIX, {"role": "assistant", "content": "4"}]
    totals = {}
    for mode in TrainOnWhat:
        messages = (
            [{**m, "trainable": m["role"] == "assistant"} for m in convo]
            if mode is TrainOnWhat.CUSTOMIZED
            else convo
        )
        model_input, weights = renderer.build_supervised_example(messages, mode)
        assert weights.dtype == np.float32 and len(weights) == model_input.length
        assert set(np.unique(weights).tolist()) <= {0.0, 1.0}
        totals[mode] = weights.sum()
    assert totals[TrainOnWhat.ALL_TOKENS] == len(weights) - len(renderer.bos_tokens)
    assert totals[TrainOnWhat.LAST_ASSISTANT_MESSAGE] < totals[TrainOnWhat.ALL_ASSISTANT_MESSAGES]
    assert totals[TrainOnWhat.ALL_ASSISTANT_MESSAGES] == totals[TrainOnWhat.CUSTOMIZED]
    assert (
        totals[TrainOnWhat.ALL_ASSISTANT_MESSAGES] + totals[TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES]
        == totals[TrainOnWhat.ALL_MESSAGES]
    )


def test_pickle_round_trip(renderer: Renderer) -> None:
    clone = pickle.loads(pickle.dumps(renderer))
    assert type(clone) is type(renderer)
    convo = [*PREFIX, {"role": "assistant", "content": "4"}]
    assert clone.build_generation_prompt(PREFIX) == renderer.build_generation_prompt(PREFIX)
    a, wa = clone.build_supervised_example(convo)
    b, wb = renderer.build_supervised_example(convo)
    assert a == b and np.array_equal(wa, wb)
    assert clone.get_stop_sequences() == renderer.get_stop_sequences()


def test_memoised_texts_give_the_tokenizers_tokens(
    renderer: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text seen before gives the tokenizer's own tokens, a caller's edit of them does not reach
    the memo, and a full memo starts over rather than growing."""
    text = " What is 3 plus 4?"
    expected = renderer.tokenizer.encode(text, add_special_tokens=False)
    first = renderer.encode(text, 7)
    first.append(-1)
    assert renderer.encode(text, 7) == [*expected, 7]
    monkeypatch.setattr("cookbook.renderers.base.MEMOISED_TEXTS", 3)
    for word in ("alpha", "beta", "gamma", "delta"):
        assert renderer.encode(word) == renderer.tokenizer.encode(word, add_special_tokens=False)
    assert len(renderer.__dict__["_text_tokens"]) <= 3


def test_extension_property_holds_where_claimed(renderer: Renderer) -> None:
    """A turn's prompt + answer is a prefix of the next turn's prompt exactly when the renderer says so."""
    first = renderer.build_generation_prompt(PREFIX[:2]).to_ints()
    answered = renderer.build_supervised_example(PREFIX[:3])[0].to_ints()
    second = renderer.build_generation_prompt(PREFIX).to_ints()
    assert answered[: len(first)] == first
    assert renderer.has_extension_property == (second[: len(answered)] == answered)


@pytest.mark.parametrize(
    ("messages", "mode", "error"),
    [
        ([{"role": "user"}], TrainOnWhat.ALL_MESSAGES, r"messages\[0\]\.content must be a string"),
        (
            [{"role": "user", "content": ["a"]}],
            TrainOnWhat.ALL_MESSAGES,
            r"messages\[0\]\.content must be a string",
        ),
        (["hello"], TrainOnWhat.ALL_MESSAGES, r"messages\[0\] must be a dict"),
        (
            [{"role": "user", "content": "a", "trainable": True}],
            TrainOnWhat.ALL_MESSAGES,
            "only TrainOnWhat.CUSTOMIZED",
        ),
        (
            [{"role": "user", "content": "a"}],
            TrainOnWhat.CUSTOMIZED,
            r"messages\[0\] needs a boolean 'trainable'",
        ),
        ([], TrainOnWhat.ALL_MESSAGES, "empty conversation"),
        ([{"role": "user", "content": "a"}], "everything", "not a valid TrainOnWhat"),
    ],
)
def test_bad_messages_are_named(
    tokenizers_by_kind: dict[str, Tokenizer], messages: list, mode: TrainOnWhat, error: str
) -> None:
    renderer = RoleColonRenderer(tokenizers_by_kind["plain"])
    with pytest.raises((ValueError, TypeError), match=error):
        renderer.build_supervised_example(messages, mode)


def test_registry(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    tok = tokenizers_by_kind["plain"]
    assert {"role_colon", "chatml", "llama3", "qwen3"} <= set(renderer_names())
    with pytest.raises(UnknownRendererError, match=r"unknown renderer 'nope'; known: .*role_colon"):
        get_renderer("nope", tok)
    with pytest.raises(ValueError, match="already registered"):
        register_renderer("role_colon", RoleColonRenderer)

    class ShoutingRenderer(RoleColonRenderer):
        def render_message(self, message, ctx):  # type: ignore[no-untyped-def]
            return super().render_message({**message, "content": message["content"].upper()}, ctx)

    register_renderer("test_shouting", ShoutingRenderer)
    register_renderer("test_shouting", ShoutingRenderer, overwrite=True)
    shouting = get_renderer("test_shouting", tok)
    assert (
        tok.decode(shouting.build_generation_prompt([{"role": "user", "content": "hi"}]).to_ints())
        == "User: HI\n\nAssistant:"
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("tiny-llama", "role_colon"),
        ("Qwen/Qwen3.5-9B-Base", "role_colon"),
        ("Qwen/Qwen3-8B", "qwen3"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3"),
        ("meta-llama/Llama-3.1-8B", "role_colon"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "chatml"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "chatml"),
    ],
)
def test_recommended_renderer_name(model: str, expected: str) -> None:
    assert recommended_renderer_name(model) == expected
