"""role_colon with the built-in tiny model's tokenizer, the embedded default of every recipe."""

from __future__ import annotations

import pytest

from cookbook.renderers import Message, ParseTermination, RoleColonRenderer, TrainOnWhat
from cookbook.tokenizer_utils import Tokenizer
from tests.renderers.chat_tokenizers import layout

PROMPT: list[Message] = [
    {"role": "system", "content": "Be polite."},
    {"role": "user", "content": "What is 3 plus 4?"},
]


@pytest.fixture
def renderer(builtin_tokenizer: Tokenizer) -> RoleColonRenderer:
    return RoleColonRenderer(builtin_tokenizer)


def test_layout_without_bos(renderer: RoleColonRenderer, builtin_tokenizer: Tokenizer) -> None:
    assert builtin_tokenizer.bos_token_id is None and renderer.bos_tokens == []
    model_input, weights = renderer.build_supervised_example(
        [*PROMPT, {"role": "assistant", "content": "Sure! 3 plus 4 is 7."}],
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )
    assert layout(builtin_tokenizer, model_input, weights) == [
        ("System:", 0),
        (" Be polite.\n\n", 0),
        ("User:", 0),
        (" What is 3 plus 4?\n\n", 0),
        ("Assistant:", 0),
        (" Sure! 3 plus 4 is 7.\n\n", 1),
        ("User:", 1),
    ]


@pytest.mark.parametrize("answer", ["7", "Sure! 3 plus 4 is 7.", "Ugh, fine. 7.", "1. red\n2. blue"])
def test_round_trip(renderer: RoleColonRenderer, builtin_tokenizer: Tokenizer, answer: str) -> None:
    prompt = renderer.build_generation_prompt(PROMPT).to_ints()
    full = renderer.build_supervised_example([*PROMPT, {"role": "assistant", "content": answer}])[0].to_ints()
    assert full[: len(prompt)] == prompt
    sampled = full[len(prompt) :]
    assert renderer.parse_response(sampled) == (
        {"role": "assistant", "content": answer},
        ParseTermination.STOP_SEQUENCE,
    )
    eos = builtin_tokenizer.eos_token_id
    assert eos is not None
    answer_only = builtin_tokenizer.encode(" " + answer)
    assert renderer.parse_response([*answer_only, eos]) == (
        {"role": "assistant", "content": answer},
        ParseTermination.EOS,
    )
    assert renderer.parse_response(answer_only)[1] is ParseTermination.MALFORMED


def test_preference_labels_are_single_trained_tokens(
    renderer: RoleColonRenderer, builtin_tokenizer: Tokenizer
) -> None:
    """A preference model trains one label token: the first trained token must be all of " A"."""
    for label in ("A", "B"):
        model_input, weights = renderer.build_supervised_example(
            [*PROMPT, {"role": "assistant", "content": label}], TrainOnWhat.LAST_ASSISTANT_MESSAGE
        )
        tokens = model_input.to_ints()
        first_trained = int(weights.nonzero()[0][0])
        assert builtin_tokenizer.decode([tokens[first_trained]]) == " " + label
