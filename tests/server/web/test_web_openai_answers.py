"""Reading sampled tokens back as OpenAI answers, and rendering a model's own chat template."""

from __future__ import annotations

import json

import pytest

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.models.builtin_tokenizer import EOS_TOKEN, builtin_tokenizer_json
from server_stub.openai_api.chat_format import ChatFormat, ChatMessage
from server_stub.openai_api.completions import read_answer, stream_events

TABLE = [b" Caf", b"\xc3", b"\xa9 ok", b"\n\nUs", b"er: more", b"<eos>"]


def answer(tokens: list[int], stop_reason: str, stops: list[str], prefix: str = " ") -> list[str]:
    sequence = types.SampledSequence(stop_reason=stop_reason, tokens=tokens, logprobs=[-1.0] * len(tokens))
    return read_answer(sequence, TABLE, stops, prefix, with_logprobs=False).deltas


def test_a_character_split_across_tokens_goes_out_whole() -> None:
    assert answer([0, 1, 2], "length", []) == ["Caf", "", "é ok"]


def test_a_stop_string_inside_a_token_cuts_the_answer_there() -> None:
    assert "".join(answer([0, 1, 2, 3, 4], "stop", ["\n\nUser:"])) == "Café ok"
    assert "".join(answer([0, 1, 2, 3, 4], "length", ["\n\nUser:"])) == "Café ok\n\nUser: more"


def test_a_stop_token_is_left_out_and_logprobs_follow_the_answer() -> None:
    sequence = types.SampledSequence(stop_reason="stop", tokens=[0, 5], logprobs=[-0.5, -0.25])
    read = read_answer(sequence, TABLE, [], "", with_logprobs=True)
    assert (read.text, read.finish_reason, read.generated_tokens) == (" Caf", "stop", 2)
    assert read.logprobs == [{"token": " Caf", "logprob": -0.5, "bytes": list(b" Caf"), "top_logprobs": []}]


def test_stream_events_end_with_usage_and_done() -> None:
    sequence = types.SampledSequence(stop_reason="length", tokens=[0], logprobs=[-1.0])
    read = read_answer(sequence, TABLE, [], " ", with_logprobs=False)
    events = list(stream_events("id", 1, "m", 4, [read], include_usage=True))
    assert events[-1] == b"data: [DONE]\n\n"
    usage = json.loads(events[-2].removeprefix(b"data: "))
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 1,
        "total_tokens": 5,
    }
    assert [json.loads(e.removeprefix(b"data: "))["choices"][0]["delta"] for e in events[:3]] == [
        {"role": "assistant", "content": ""},
        {"content": "Caf"},
        {},
    ]


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def templated(template: str) -> ChatFormat:
    spec = json.loads(builtin_tokenizer_json())
    next_id = max(t["id"] for t in spec["added_tokens"]) + len(spec["model"]["vocab"])
    for offset, content in enumerate(["<|im_start|>", "<|im_end|>"]):
        spec["added_tokens"].append(
            {
                "id": next_id + offset,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
    files = types.TokenizerResponse(
        model_name="m", tokenizer_json=json.dumps(spec), eos_token="<|im_end|>", chat_template=template
    )
    return ChatFormat(files)


def test_a_model_with_a_template_is_rendered_by_it() -> None:
    chat = templated(CHATML)
    tokens = chat.render([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    decoded = b"".join(chat.token_bytes.table[t] for t in tokens).decode()
    assert (
        decoded
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokens[0] == chat.token_bytes.table.index(b"<|im_start|>")  # special tokens stay single tokens
    assert chat.stop_strings == () and chat.answer_prefix == ""


def test_a_template_that_refuses_the_conversation_is_a_user_error() -> None:
    chat = templated("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(UserError, match="roles must alternate"):
        chat.render([ChatMessage("user", "Hi")])


def test_without_a_template_the_format_is_role_colon() -> None:
    chat = ChatFormat(
        types.TokenizerResponse(
            model_name="tiny", tokenizer_json=builtin_tokenizer_json(), eos_token=EOS_TOKEN
        )
    )
    tokens = chat.render([ChatMessage("user", "Hi")])
    assert b"".join(chat.token_bytes.table[t] for t in tokens) == b"User: Hi\n\nAssistant:"
    assert chat.stop_strings == ("\n\nUser:",)
