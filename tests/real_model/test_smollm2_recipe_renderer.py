"""Recipes served a model under a name that says nothing ("smollm2") render with the model's own chat
format, read from the server's tokenizer, in every recipe through one choice (`renderer_name_for`)."""

from __future__ import annotations

import logging

import pytest

from cookbook.client.local_server import LocalServer
from cookbook.model_config import renderer_name_for
from cookbook.recipes import sl_basic
from cookbook.recipes.preference.dpo import train as dpo
from cookbook.recipes.preference.rlhf.rlhf_pipeline import PipelineConfig
from cookbook.tokenizer_utils import Tokenizer, register_tokenizer

from .conftest import SERVED_NAME


def test_sl_basic_dpo_and_rlhf_pipeline_choose_the_servers_chat_format(smollm2_server: LocalServer) -> None:
    url = smollm2_server.url
    assert renderer_name_for(SERVED_NAME, url) == "chatml"
    assert sl_basic.build_config(sl_basic.CLIConfig(model_name=SERVED_NAME, base_url=url)).renderer_name == (
        "chatml"
    )
    assert dpo._renderer_name(dpo.CLIConfig(model_name=SERVED_NAME, base_url=url)) == "chatml"
    assert PipelineConfig(model_name=SERVED_NAME, base_url=url).renderer == "chatml"


def test_an_explicit_renderer_wins_and_the_name_decides_without_a_server() -> None:
    assert renderer_name_for(SERVED_NAME, "http://127.0.0.1:9", "role_colon") == "role_colon"
    assert renderer_name_for("HuggingFaceTB/SmolLM2-135M-Instruct", "http://127.0.0.1:9") == "chatml"
    assert renderer_name_for("tiny-llama", "http://127.0.0.1:9") == "role_colon"


def test_a_template_no_renderer_reproduces_is_a_loud_warning(
    smollm2_tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    odd = Tokenizer(
        smollm2_tokenizer.raw,
        bos_token=smollm2_tokenizer.bos_token,
        eos_token=smollm2_tokenizer.eos_token,
        chat_template="{% for m in messages %}<<{{ m['role'] }}>> {{ m['content'] }}\n{% endfor %}",
    )
    register_tokenizer("odd-format-model", odd)
    with caplog.at_level(logging.WARNING):
        assert renderer_name_for("odd-format-model", "http://127.0.0.1:9") == "role_colon"
    assert any("does not reproduce" in r.getMessage() for r in caplog.records)
