"""`--model smollm2=FILE.gguf`: the server serves a GGUF's tokenizer, chat template and special tokens,
and the cookbook picks the renderer the template asks for."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cookbook.client.http import HttpServiceClient
from cookbook.model_config import get_recommended_renderer_name
from cookbook.renderers import ChatMLRenderer, RoleColonRenderer, get_renderer
from cookbook.renderers.chat_template import render_chat_template
from cookbook.renderers.template_probe import PROBE_CONVERSATION, reproduces_chat_template
from cookbook.tokenizer_utils import Tokenizer

from .conftest import SERVED_NAME

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def test_the_tokenizer_is_the_ggufs_own(gguf_path: Path, smollm2_tokenizer: Tokenizer) -> None:
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    text = "What is the capital of France? <|im_end|> Paris, of course!"
    assert smollm2_tokenizer.encode(text) == theirs.encode(text, add_special_tokens=False)
    assert (smollm2_tokenizer.bos_token, smollm2_tokenizer.eos_token) == (theirs.bos_token, theirs.eos_token)
    assert smollm2_tokenizer.eos_token == IM_END
    assert smollm2_tokenizer.chat_template == theirs.chat_template
    assert IM_START in (smollm2_tokenizer.chat_template or "")


def test_the_client_renders_the_template_as_transformers_does(
    gguf_path: Path, smollm2_tokenizer: Tokenizer
) -> None:
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    for messages in (list(PROBE_CONVERSATION), list(PROBE_CONVERSATION[1:2])):
        for add_generation_prompt in (False, True):
            expected = theirs.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
            ours = render_chat_template(
                smollm2_tokenizer, messages, add_generation_prompt=add_generation_prompt
            )
            assert ours == expected


def test_get_info_and_capabilities_describe_the_model(smollm2_service: HttpServiceClient) -> None:
    capabilities = smollm2_service.get_server_capabilities()
    served = {m.model_name: m.max_context_length for m in capabilities.supported_models}
    assert served[SERVED_NAME] == 8192
    info = smollm2_service.create_lora_training_client(SERVED_NAME, rank=4).get_info()
    assert info.model_data.arch == "llama"
    chat_format = info.model_data.chat_format
    assert chat_format is not None
    assert (chat_format.bos_token, chat_format.eos_token, chat_format.pad_token) == (IM_START, IM_END, IM_END)
    assert chat_format.chat_template == smollm2_service.get_tokenizer(SERVED_NAME).chat_template


def test_a_name_that_says_nothing_gets_the_templates_renderer(
    smollm2_tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    assert get_recommended_renderer_name(SERVED_NAME) == RoleColonRenderer.name  # no tokenizer: name only
    with caplog.at_level(logging.WARNING):
        assert get_recommended_renderer_name(SERVED_NAME, smollm2_tokenizer) == ChatMLRenderer.name
    assert not caplog.records
    assert reproduces_chat_template(get_renderer(ChatMLRenderer.name, smollm2_tokenizer))
    assert not reproduces_chat_template(get_renderer(RoleColonRenderer.name, smollm2_tokenizer))


def test_a_renderer_that_does_not_reproduce_the_template_is_a_warning(
    smollm2_tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        chosen = get_recommended_renderer_name("smollm2-base", smollm2_tokenizer)
    assert chosen == RoleColonRenderer.name  # the name decides...
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1  # ...but not silently
    assert "smollm2-base" in warned[0] and RoleColonRenderer.name in warned[0] and "chatml" in warned[0]
