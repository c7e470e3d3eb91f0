"""chatml, llama3 and qwen3: exact token layout (special tokens as single ids) and weights."""

from __future__ import annotations

import pytest

from cookbook.renderers import (
    ChatMLRenderer,
    Llama3Renderer,
    Message,
    ParseTermination,
    Qwen3Renderer,
    TrainOnWhat,
    get_renderer,
)
from cookbook.tokenizer_utils import Tokenizer
from tests.renderers.chat_tokenizers import encode_parts, layout

CONVO: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 3 plus 4?"},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "And 2 plus 2?"},
    {"role": "assistant", "content": "4"},
]


def test_chatml_layout(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    tok = tokenizers_by_kind["chatml"]
    renderer = get_renderer("chatml", tok)
    model_input, weights = renderer.build_supervised_example(CONVO, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    expected_parts = [
        (["<|im_start|>", "system\n"], 0),
        (["Be brief.", "<|im_end|>"], 0),
        (["\n", "<|im_start|>", "user\n"], 0),
        (["What is 3 plus 4?", "<|im_end|>"], 0),
        (["\n", "<|im_start|>", "assistant\n"], 0),
        (["7", "<|im_end|>"], 1),
        (["\n", "<|im_start|>", "user\n"], 0),
        (["And 2 plus 2?", "<|im_end|>"], 0),
        (["\n", "<|im_start|>", "assistant\n"], 0),
        (["4", "<|im_end|>"], 1),
    ]
    assert [c.tokens for c in model_input.chunks] == [encode_parts(tok, parts) for parts, _ in expected_parts]
    assert [w for _, w in layout(tok, model_input, weights)] == [w for _, w in expected_parts]
    # Exactly the text of the standard ChatML template (the newline after the last <|im_end|> is not rendered).
    template = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in CONVO)
    assert tok.decode(model_input.to_ints()) == template.removesuffix("\n")
    prompt = renderer.build_generation_prompt(CONVO[:4])
    assert (
        tok.decode(prompt.to_ints())
        == template.split("<|im_start|>assistant\n4")[0] + "<|im_start|>assistant\n"
    )
    assert renderer.get_stop_sequences() == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_llama3_layout(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    tok = tokenizers_by_kind["llama3"]
    renderer = get_renderer("llama3", tok)
    assert isinstance(renderer, Llama3Renderer)
    model_input, weights = renderer.build_supervised_example(CONVO[:3], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    expected_parts = [
        (["<|begin_of_text|>"], 0),
        (["<|start_header_id|>", "system", "<|end_header_id|>", "\n\n"], 0),
        (["Be brief.", "<|eot_id|>"], 0),
        (["<|start_header_id|>", "user", "<|end_header_id|>", "\n\n"], 0),
        (["What is 3 plus 4?", "<|eot_id|>"], 0),
        (["<|start_header_id|>", "assistant", "<|end_header_id|>", "\n\n"], 0),
        (["7", "<|eot_id|>"], 1),
    ]
    assert [c.tokens for c in model_input.chunks] == [encode_parts(tok, parts) for parts, _ in expected_parts]
    assert [w for _, w in layout(tok, model_input, weights)] == [w for _, w in expected_parts]
    prompt = renderer.build_generation_prompt(CONVO[:2])
    assert tok.decode(prompt.to_ints()) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 3 plus 4?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert renderer.get_stop_sequences() == [tok.convert_tokens_to_ids("<|eot_id|>")]


def test_qwen3_think_block_convention(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    tok = tokenizers_by_kind["qwen3"]
    renderer = get_renderer("qwen3", tok)
    assert isinstance(renderer, Qwen3Renderer) and not renderer.has_extension_property
    model_input, weights = renderer.build_supervised_example(CONVO, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    # The earlier assistant turn has no think block; the final one has an empty, untrained one.
    assert layout(tok, model_input, weights)[4:] == [
        ("\n<|im_start|>assistant\n", 0),
        ("7<|im_end|>", 1),
        ("\n<|im_start|>user\n", 0),
        ("And 2 plus 2?<|im_end|>", 0),
        ("\n<|im_start|>assistant\n<think>\n\n</think>\n\n", 0),
        ("4<|im_end|>", 1),
    ]
    think_ids = encode_parts(tok, ["<think>", "\n\n", "</think>", "\n\n"])
    assert (
        model_input.chunks[8].tokens == encode_parts(tok, ["\n", "<|im_start|>", "assistant\n"]) + think_ids
    )
    assert tok.convert_tokens_to_ids("<think>") in think_ids  # an added token, not spelled out
    prompt = renderer.build_generation_prompt(CONVO[:4])
    assert tok.decode(prompt.to_ints()).endswith(
        "<|im_start|>user\nAnd 2 plus 2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert "<think>" not in tok.decode(prompt.to_ints()).split("And 2 plus 2?")[0]
    # Generating another role gets a plain header.
    assert tok.decode(renderer.build_generation_prompt(CONVO[:3], role="user").to_ints()).endswith(
        "<|im_start|>user\n"
    )


def test_qwen3_parse_drops_a_think_block_the_model_wrote(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    tok = tokenizers_by_kind["qwen3"]
    renderer = Qwen3Renderer(tok)
    tokens = tok.encode("<think>\nadd them\n</think>\n\n4<|im_end|>")
    assert renderer.parse_response(tokens) == (
        {"role": "assistant", "content": "4"},
        ParseTermination.STOP_SEQUENCE,
    )


def test_chatml_eos_equal_to_stop_token_is_a_stop(tokenizers_by_kind: dict[str, Tokenizer]) -> None:
    """SmolLM2-Instruct's EOS is <|im_end|> itself: ending with it is a stop, not an EOS."""
    base = tokenizers_by_kind["chatml"]
    tok = Tokenizer.from_json_str(base.to_json_str(), eos_token="<|im_end|>")
    renderer = ChatMLRenderer(tok)
    message, ended = renderer.parse_response(tok.encode("4<|im_end|>"))
    assert (message["content"], ended) == ("4", ParseTermination.STOP_SEQUENCE)


@pytest.mark.parametrize(
    ("name", "missing"),
    [("chatml", "<|im_start|>"), ("qwen3", "<|im_start|>"), ("llama3", "<|begin_of_text|>")],
)
def test_format_needs_its_special_tokens(
    tokenizers_by_kind: dict[str, Tokenizer], name: str, missing: str
) -> None:
    with pytest.raises(ValueError, match=f"needs the token '{missing}'"):
        get_renderer(name, tokenizers_by_kind["plain"])
