"""`python -m cookbook.export` on a LoRA trained on SmolLM2 served from its GGUF: transformers loads the
merged model, peft the adapter on its own base reference, and both reproduce the server's logprobs.

A GGUF path is no base other tools load, so the adapter carries the dequantised base in
`base_model/`; SmolLM2 ties its output layer to the input embeddings and the LoRA adapts it, which
is what the merge must untie.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from cookbook import export as export_cli
from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.renderers.chat_template import render_chat_template
from cookbook.renderers.types import Message
from cookbook.tokenizer_utils import Tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LOGPROB_TOLERANCE = 1e-4
PROBE_CHAT = [
    Message(role="user", content="Name a primary color."),
    Message(role="assistant", content="Blue, like the sky."),
]
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}


@pytest.fixture(scope="module")
def exports(
    smollm2_server: LocalServer, trained_lora_sampler_path: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The trained LoRA exported by the command line both ways: {"peft": DIR, "merged": DIR}."""
    root = tmp_path_factory.mktemp("smollm2-exports")
    flags = {"peft": [], "merged": ["--merged"]}
    for form, extra in flags.items():
        argv = [trained_lora_sampler_path, "--out", str(root / form), "--base-url", smollm2_server.url]
        assert export_cli.main(argv + extra) == 0
    return {form: root / form for form in flags}


@pytest.fixture(scope="module")
def probe_tokens(smollm2_tokenizer: Tokenizer) -> list[int]:
    return smollm2_tokenizer.encode(
        render_chat_template(smollm2_tokenizer, PROBE_CHAT, add_generation_prompt=False)
    )


@pytest.fixture(scope="module")
def server_logprobs(
    smollm2_service: HttpServiceClient, trained_lora_sampler_path: str, probe_tokens: list[int]
) -> np.ndarray:
    sampler = smollm2_service.create_sampling_client(model_path=trained_lora_sampler_path)
    scores = sampler.compute_logprobs(types.ModelInput.from_ints(probe_tokens)).result()
    return np.array(scores[1:], dtype=np.float64)


def _logprobs(model: torch.nn.Module, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0, :-1].float()
    picked = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(tokens[1:])[:, None])[:, 0]
    return picked.double().numpy()


def _assert_tokenizer_is_the_ggufs(
    directory: Path, smollm2_tokenizer: Tokenizer, reference_tokenizer: PreTrainedTokenizerBase
) -> None:
    from transformers import AutoTokenizer

    assert {p.name for p in directory.iterdir()} >= TOKENIZER_FILES, directory
    exported = AutoTokenizer.from_pretrained(str(directory))
    assert exported.chat_template == reference_tokenizer.chat_template
    assert (exported.bos_token, exported.eos_token) == (
        reference_tokenizer.bos_token,
        reference_tokenizer.eos_token,
    )
    for messages, add_generation_prompt in ((PROBE_CHAT, False), (PROBE_CHAT[:1], True)):
        text = exported.apply_chat_template(
            list(messages),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        server_text = render_chat_template(
            smollm2_tokenizer, messages, add_generation_prompt=add_generation_prompt
        )
        assert text == server_text
        assert exported.encode(text, add_special_tokens=False) == smollm2_tokenizer.encode(server_text)


def test_the_adapter_loads_in_peft_on_its_bundled_base_and_matches_the_server(
    exports: dict[str, Path],
    server_logprobs: np.ndarray,
    probe_tokens: list[int],
    smollm2_tokenizer: Tokenizer,
    reference_tokenizer: PreTrainedTokenizerBase,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = exports["peft"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    base_ref = config["base_model_name_or_path"]
    assert base_ref == str((adapter / "base_model").resolve())
    assert config["r"] == 8
    for directory in (adapter, adapter / "base_model"):
        _assert_tokenizer_is_the_ggufs(directory, smollm2_tokenizer, reference_tokenizer)
    base_config = json.loads((adapter / "base_model" / "config.json").read_text())
    assert "quantization_config" not in base_config

    base = AutoModelForCausalLM.from_pretrained(base_ref, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    diff = float(np.abs(_logprobs(model, probe_tokens) - server_logprobs).max())
    with capsys.disabled():
        print(f"\nSmolLM2 PEFT export (peft on its bundled base) vs server: max abs logprob diff {diff:.2e}")
    assert diff <= LOGPROB_TOLERANCE


def test_the_merged_model_loads_in_transformers_and_matches_the_server(
    exports: dict[str, Path],
    server_logprobs: np.ndarray,
    probe_tokens: list[int],
    smollm2_tokenizer: Tokenizer,
    reference_tokenizer: PreTrainedTokenizerBase,
    reference_model: PreTrainedModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from transformers import AutoModelForCausalLM

    merged_dir = exports["merged"]
    assert not (merged_dir / "base_model").exists()
    assert {"config.json", "model.safetensors", "generation_config.json"} <= {
        p.name for p in merged_dir.iterdir()
    }
    _assert_tokenizer_is_the_ggufs(merged_dir, smollm2_tokenizer, reference_tokenizer)
    config = json.loads((merged_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and "quantization_config" not in config

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    # LoRA adapted the output layer only: the input embeddings stay the base's.
    assert torch.equal(merged.get_input_embeddings().weight, reference_model.get_input_embeddings().weight)
    assert not torch.equal(merged.get_output_embeddings().weight, merged.get_input_embeddings().weight)
    diff = float(np.abs(_logprobs(merged, probe_tokens) - server_logprobs).max())
    base_diff = float(np.abs(_logprobs(reference_model, probe_tokens) - server_logprobs).max())
    with capsys.disabled():
        print(
            f"\nSmolLM2 merged export (transformers) vs server: max abs logprob diff {diff:.2e} "
            f"(the untrained base differs by {base_diff:.2e})"
        )
    assert diff <= LOGPROB_TOLERANCE
    assert base_diff > 100 * LOGPROB_TOLERANCE  # the training moved the model, so the match means something


def test_a_given_base_reference_gets_an_adapter_without_a_base(
    exports: dict[str, Path],
    smollm2_server: LocalServer,
    trained_lora_sampler_path: str,
    server_logprobs: np.ndarray,
    probe_tokens: list[int],
    tmp_path: Path,
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    own_base = exports["peft"] / "base_model"
    out = tmp_path / "adapter-only"
    argv = [trained_lora_sampler_path, "--out", str(out), "--base-url", smollm2_server.url]
    assert export_cli.main([*argv, "--base-ref", str(own_base)]) == 0
    assert not (out / "base_model").exists()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(own_base)
    base = AutoModelForCausalLM.from_pretrained(str(own_base), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(out)).eval()
    assert np.abs(_logprobs(model, probe_tokens) - server_logprobs).max() <= LOGPROB_TOLERANCE
