"""role_colon: exact layout, the weights of every TrainOnWhat, BOS handling and parsing."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.renderers import Message, ParseTermination, RoleColonRenderer, TrainOnWhat, get_renderer
from cookbook.tokenizer_utils import Tokenizer
from tests.renderers.chat_tokenizers import layout

CONVO: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 3 plus 4?"},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "And 2 plus 2?"},
    {"role": "assistant", "content": "4"},
]


@pytest.fixture
def tok(tokenizers_by_kind: dict[str, Tokenizer]) -> Tokenizer:
    return tokenizers_by_kind["plain"]


@pytest.fixture
def renderer(tok: Tokenizer) -> RoleColonRenderer:
    renderer = get_renderer("role_colon", tok)
    assert isinstance(renderer, RoleColonRenderer)
    return renderer


def test_generation_prompt_layout(renderer: RoleColonRenderer, tok: Tokenizer) -> None:
    prompt = renderer.build_generation_prompt(CONVO[:4])
    assert layout(tok, prompt) == [
        ("System:", 0),
        (" Be brief.\n\n", 0),
        ("User:", 0),
        (" What is 3 plus 4?\n\n", 0),
        ("Assistant:", 0),
        (" 7\n\n", 0),
        ("User:", 0),
        (" And 2 plus 2?\n\n", 0),
        ("Assistant:", 0),
    ]
    # Each piece is encoded on its own, never across a piece boundary.
    assert [c.tokens for c in prompt.chunks][:2] == [tok.encode("System:"), tok.encode(" Be brief.\n\n")]
    assert tok.decode(prompt.to_ints()) == (
        "System: Be brief.\n\nUser: What is 3 plus 4?\n\nAssistant: 7\n\nUser: And 2 plus 2?\n\nAssistant:"
    )


def test_generation_prompt_role_and_prefill(renderer: RoleColonRenderer, tok: Tokenizer) -> None:
    as_user = renderer.build_generation_prompt(CONVO[:3], role="user")
    assert layout(tok, as_user)[-1] == ("User:", 0)
    prefilled = renderer.build_generation_prompt(CONVO[:2], prefill=" Sure,")
    assert layout(tok, prefilled)[-2:] == [("Assistant:", 0), (" Sure,", 0)]
    # An empty prefill adds nothing (and no empty chunk).
    assert renderer.build_generation_prompt(CONVO[:2], prefill="") == renderer.build_generation_prompt(
        CONVO[:2]
    )


HEADER_AND_OUTPUT_TEXT = [
    ("System:", " Be brief.\n\n"),
    ("User:", " What is 3 plus 4?\n\n"),
    ("Assistant:", " 7\n\n"),
    ("User:", " And 2 plus 2?\n\n"),
    ("Assistant:", " 4\n\n"),
]


@pytest.mark.parametrize(
    ("train_on_what", "output_weights", "header_weight"),
    [
        (TrainOnWhat.LAST_ASSISTANT_MESSAGE, [0, 0, 0, 0, 1], 0),
        (TrainOnWhat.LAST_ASSISTANT_TURN, [0, 0, 0, 0, 1], 0),
        (TrainOnWhat.ALL_ASSISTANT_MESSAGES, [0, 0, 1, 0, 1], 0),
        (TrainOnWhat.ALL_MESSAGES, [1, 1, 1, 1, 1], 0),
        (TrainOnWhat.ALL_TOKENS, [1, 1, 1, 1, 1], 1),
        (TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES, [1, 1, 0, 1, 0], 0),
    ],
)
def test_supervised_weights(
    renderer: RoleColonRenderer,
    tok: Tokenizer,
    train_on_what: TrainOnWhat,
    output_weights: list[int],
    header_weight: int,
) -> None:
    model_input, weights = renderer.build_supervised_example(CONVO, train_on_what)
    assert weights.dtype == np.float32 and weights.shape == (model_input.length,)
    expected = []
    for (header, output), w in zip(HEADER_AND_OUTPUT_TEXT, output_weights, strict=True):
        expected += [(header, header_weight), (output, w)]
    # The last (assistant) message's stop overlap completes "\n\nUser:" with that message's weight.
    expected.append(("User:", output_weights[-1]))
    assert layout(tok, model_input, weights) == expected


def test_last_assistant_turn_differs_from_last_message(renderer: RoleColonRenderer, tok: Tokenizer) -> None:
    convo = [*CONVO, {"role": "assistant", "content": "Anything else?"}]
    _, last_message = renderer.build_supervised_example(convo, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    model_input, last_turn = renderer.build_supervised_example(convo, TrainOnWhat.LAST_ASSISTANT_TURN)
    trained = [text for text, w in layout(tok, model_input, last_turn) if w]
    assert trained == [" 4\n\n", " Anything else?\n\n", "User:"]
    assert [text for text, w in layout(tok, model_input, last_message) if w] == [
        " Anything else?\n\n",
        "User:",
    ]


def test_customized_uses_trainable_flags(renderer: RoleColonRenderer, tok: Tokenizer) -> None:
    convo = [{**m, "trainable": i in (1, 2)} for i, m in enumerate(CONVO)]
    model_input, weights = renderer.build_supervised_example(convo, TrainOnWhat.CUSTOMIZED)
    trained = [text for text, w in layout(tok, model_input, weights) if w]
    assert trained == [" What is 3 plus 4?\n\n", " 7\n\n"]  # last message untrained: its overlap too


def test_non_assistant_last_message_has_no_stop_overlap(renderer: RoleColonRenderer, tok: Tokenizer) -> None:
    model_input, weights = renderer.build_supervised_example(
        CONVO[:4], TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES
    )
    assert layout(tok, model_input, weights)[-1] == (" And 2 plus 2?\n\n", 1)


def test_train_on_what_accepts_its_string_value(renderer: RoleColonRenderer) -> None:
    _, by_enum = renderer.build_supervised_example(CONVO, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    _, by_string = renderer.build_supervised_example(CONVO, "all_assistant_messages")  # type: ignore[arg-type]
    np.testing.assert_array_equal(by_enum, by_string)


def test_bos_only_when_the_tokenizer_has_one(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    plain = RoleColonRenderer(tokenizers_by_kind["plain"])
    assert plain.bos_tokens == []
    with_bos_tok = tokenizers_by_kind["plain_bos"]
    with_bos = RoleColonRenderer(with_bos_tok)
    bos = with_bos_tok.bos_token_id
    assert bos is not None and with_bos.bos_tokens == [bos]
    prompt = with_bos.build_generation_prompt(CONVO[:2])
    assert prompt.chunks[0].tokens == [bos]
    model_input, weights = with_bos.build_supervised_example(CONVO, TrainOnWhat.ALL_TOKENS)
    assert model_input.chunks[0].tokens == [bos] and weights[0] == 0
    assert model_input.to_ints().count(bos) == 1


def test_stop_sequence(renderer: RoleColonRenderer) -> None:
    assert renderer.get_stop_sequences() == ["\n\nUser:"]


def _continuation(renderer: RoleColonRenderer, prefix: list[Message], answer: str) -> list[int]:
    """The tokens a supervised example trains after the generation prompt of `prefix`."""
    prompt = renderer.build_generation_prompt(prefix).to_ints()
    model_input, weights = renderer.build_supervised_example(
        [*prefix, {"role": "assistant", "content": answer}], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    tokens = model_input.to_ints()
    assert tokens[: len(prompt)] == prompt, "the training example must extend the sampling prompt"
    assert weights[: len(prompt)].sum() == 0 and (weights[len(prompt) :] == 1).all()
    return tokens[len(prompt) :]


@pytest.mark.parametrize("answer", ["4", "Sure! 2 plus 2 is 4.", "Line one.\nLine two.", "a\n\nb"])
def test_parse_round_trip_stop_sequence(renderer: RoleColonRenderer, tok: Tokenizer, answer: str) -> None:
    continuation = _continuation(renderer, CONVO[:4], answer)
    assert renderer.parse_response(continuation) == (
        {"role": "assistant", "content": answer},
        ParseTermination.STOP_SEQUENCE,
    )
    # A model that spells the same text with other token boundaries parses the same.
    respelled = tok.encode(tok.decode(continuation))
    assert renderer.parse_response(respelled)[1] is ParseTermination.STOP_SEQUENCE


def test_parse_eos_and_malformed(renderer: RoleColonRenderer, tok: Tokenizer) -> None:
    eos = tok.eos_token_id
    assert eos is not None
    answer = tok.encode(" 2 plus 2 is 4.")
    message, ended = renderer.parse_response([*answer, eos])
    assert (message["content"], ended) == ("2 plus 2 is 4.", ParseTermination.EOS)
    assert ended.is_clean and not ended.is_stop_sequence
    message, ended = renderer.parse_response(answer)  # cut off by max_tokens
    assert (message["content"], ended) == ("2 plus 2 is 4.", ParseTermination.MALFORMED)
    assert not ended.is_clean
    stop = tok.encode("\n\nUser:")
    # The sampler stops at the stop sequence: EOS after it, or a second one, is malformed.
    assert renderer.parse_response([*answer, *stop, eos])[1] is ParseTermination.MALFORMED
    message, ended = renderer.parse_response([*answer, *stop, *tok.encode(" hi"), *stop])
    assert (message["content"], ended) == ("2 plus 2 is 4.", ParseTermination.MALFORMED)
    assert renderer.parse_response([])[1] is ParseTermination.MALFORMED
