"""Per-model recipe defaults: chat format and LoRA rank."""

from __future__ import annotations

import pytest

from cookbook.model_config import get_recommended_lora_rank, get_recommended_renderer_name


@pytest.mark.parametrize(
    ("model_name", "renderer"),
    [
        ("tiny-llama", "role_colon"),
        ("Qwen/Qwen3.5-9B-Base", "role_colon"),
        ("meta-llama/Llama-3.1-8B", "role_colon"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "chatml"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "chatml"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("Qwen/Qwen3-8B", "qwen3"),
    ],
)
def test_recommended_renderer(model_name: str, renderer: str) -> None:
    assert get_recommended_renderer_name(model_name) == renderer


def test_recommended_renderer_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        get_recommended_renderer_name("")


def test_the_random_init_builtin_model_trains_full_weights() -> None:
    assert get_recommended_lora_rank("tiny-llama") == 0
    assert get_recommended_lora_rank("Qwen/Qwen3-8B") == 32
