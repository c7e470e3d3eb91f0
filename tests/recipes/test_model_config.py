"""Per-model recipe defaults: chat format and LoRA rank."""

from __future__ import annotations

import functools

import pytest

from cookbook.model_config import (
    RECIPE_DEFAULTS,
    get_recommended_lora_rank,
    get_recommended_renderer_name,
    model_kind,
    recipe_defaults,
)
from cookbook.recipes.preference.dpo import train as dpo
from cookbook.recipes.preference.rlhf import rlhf_pipeline
from cookbook.recipes.renamed_keys import recipe_entrypoint


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


def test_a_pretrained_model_gets_the_pretrained_defaults_and_the_builtin_model_the_recipes_own() -> None:
    assert model_kind("tiny-llama") == "random_init" and model_kind("smollm2") == "pretrained"
    assert recipe_defaults("rlhf_pipeline", "tiny-llama") == {} == recipe_defaults("dpo", "tiny-llama")
    assert recipe_defaults("dpo", "smollm2") == dict(RECIPE_DEFAULTS["pretrained"]["dpo"])


def test_the_entrypoint_applies_model_defaults_under_the_command_line() -> None:
    def made(config: rlhf_pipeline.PipelineConfig) -> rlhf_pipeline.PipelineConfig:
        return config

    def config_of(argv: list[str]) -> rlhf_pipeline.PipelineConfig:
        defaults = functools.partial(recipe_defaults, "rlhf_pipeline")
        return recipe_entrypoint(made, rlhf_pipeline.RENAMED_KEYS, defaults, argv=argv)

    builtin = config_of([])
    assert builtin == rlhf_pipeline.PipelineConfig()
    pretrained = recipe_defaults("rlhf_pipeline", "some-org/SomeModel-Instruct")
    real = config_of(["model_name=some-org/SomeModel-Instruct", "rm.steps=7"])
    assert real.rm.steps == 7  # the command line wins
    assert real.rl.steps == pretrained["rl.steps"] != builtin.rl.steps
    assert real.sft.optimizer.learning_rate == pretrained["sft.optimizer.learning_rate"]
    assert real.comparison_test_size == pretrained["comparison_test_size"]


def test_every_pretrained_default_is_a_key_of_its_recipe() -> None:
    def made_dpo(config: dpo.CLIConfig) -> dpo.CLIConfig:
        return config

    def made_pipeline(config: rlhf_pipeline.PipelineConfig) -> rlhf_pipeline.PipelineConfig:
        return config

    for recipe, made, renamed in (
        ("dpo", made_dpo, dpo.RENAMED_KEYS),
        ("rlhf_pipeline", made_pipeline, rlhf_pipeline.RENAMED_KEYS),
    ):
        defaults = functools.partial(recipe_defaults, recipe)
        config = recipe_entrypoint(made, renamed, defaults, argv=["model_name=my-org/My-Model"])
        for key, value in recipe_defaults(recipe, "my-org/My-Model").items():
            found: object = config
            for part in key.split("."):
                found = getattr(found, part)
            assert found == value, (recipe, key)
