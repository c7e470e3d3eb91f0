"""Per-model defaults a recipe needs: which chat format to render with, and how to train.

The renderer choice itself lives with the renderers (`recommended_renderer_name`), so the two
never disagree; this module is the one place recipes ask "what suits model X?".

The recipes' own defaults are tuned for the built-in random-init model. A pretrained model wants
other ones (LoRA, smaller learning rates, fewer and costlier steps, smaller evaluations):
`RECIPE_DEFAULTS` holds them per model kind and recipe, as the recipe's command-line keys, and
`recipe_entrypoint` applies them under whatever the command line sets. The measurements behind
them are in bench/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from cookbook.renderers.registry import recommended_renderer_name, renderer_name_from_model_name
from cookbook.renderers.role_colon import RoleColonRenderer

if TYPE_CHECKING:
    from cookbook.tokenizer_utils import Tokenizer

BUILTIN_MODEL_NAME = "tiny-llama"
"""The server's built-in model: random init, so it has no chat format and learns only with full weights."""

DEFAULT_LORA_RANK = 32

ModelKind = Literal["random_init", "pretrained"]
RecipeName = Literal["rlhf_pipeline", "dpo"]

PRETRAINED_SFT_STAGE: Mapping[str, Any] = {
    "sft.batch_size": 16,
    "sft.max_length": 96,
    "sft.steps": 30,
    "sft.eval_every": 15,
    "sft.optimizer.learning_rate": 5e-4,
    "sft.optimizer.lr_warmup_steps": 3,
}
"""The chat SFT stage both preference recipes run first on a pretrained model (the same data and task)."""

RECIPE_DEFAULTS: Mapping[ModelKind, Mapping[RecipeName, Mapping[str, Any]]] = {
    # The recipes' declared defaults are this kind's.
    "random_init": {"rlhf_pipeline": {}, "dpo": {}},
    "pretrained": {
        "rlhf_pipeline": {
            "comparison_test_size": 100,
            **PRETRAINED_SFT_STAGE,
            # A pairwise judge stayed at chance for 50 steps on SmolLM2; a reward head learns in 25.
            "rm.kind": "scalar",
            "rm.batch_size": 16,
            "rm.max_length": 160,
            "rm.steps": 50,
            "rm.eval_every": 25,
            "rm.optimizer.learning_rate": 1e-3,
            "rm.optimizer.lr_warmup_steps": 6,
            "rm.optimizer.grad_clip_norm": 0.0,  # as measured on SmolLM2 (the built-in model's stage clips)
            "rl.steps": 10,
            "rl.batch_size": 4,
            "rl.group_size": 4,
            "rl.max_tokens": 24,
            "rl.eval_every": 3,
            "rl.eval_comparisons": 48,
            "rl.optimizer.learning_rate": 2e-4,
            "rl.kl_penalty_coef": 0.1,  # as measured on SmolLM2 (the built-in model's scalar kind uses 0.2)
        },
        "dpo": {
            **PRETRAINED_SFT_STAGE,
            "test_size": 100,
            "max_length": 160,
            "batch_size": 8,
            "eval_every": 10,
            "eval_comparisons": 48,
            "eval_max_tokens": 24,
            "max_steps": 40,  # an epoch of the bundled comparisons is 500 steps; accuracy levels off by 30
            "optimizer.learning_rate": 1e-4,  # 3e-4 levels off lower and pulls the answers further off the data
        },
    },
}
"""Per model kind and recipe: command-line key -> default (the command line still overrides)."""


def model_kind(model_name: str) -> ModelKind:
    """The built-in model is random-init; every other model a user serves is pretrained."""
    return "random_init" if model_name == BUILTIN_MODEL_NAME else "pretrained"


def recipe_defaults(recipe: RecipeName, model_name: str) -> dict[str, Any]:
    """The defaults `recipe` takes for `model_name`'s kind, as command-line keys."""
    return dict(RECIPE_DEFAULTS[model_kind(model_name)][recipe])


def get_recommended_renderer_name(model_name: str, tokenizer: Tokenizer | None = None) -> str:
    """The chat format a model was trained with (`role_colon` for base models and tiny-llama).

    SmolLM2 / Qwen2.5 Instruct -> `chatml`, Llama-3 Instruct -> `llama3`, Qwen3 -> `qwen3`. When the
    name says nothing (a model served as "smollm2"), the tokenizer's chat template decides; a
    choice that does not reproduce that template is logged as a warning.
    """
    if not model_name:
        raise ValueError("model_name must be a non-empty string")
    return recommended_renderer_name(model_name, tokenizer)


def renderer_name_for(model_name: str, base_url: str | None, renderer_name: str | None = None) -> str:
    """The renderer a recipe uses: `renderer_name` when given, else the model's own chat format.

    When the name says nothing (a model served as "smollm2"), the model's tokenizer and chat
    template are fetched from the server at `base_url` (None: the bundled local server) and the
    renderer that reproduces the template is chosen, with a warning when none does.
    """
    if renderer_name:
        return renderer_name
    if not model_name:
        raise ValueError("model_name must be a non-empty string")
    if model_name == BUILTIN_MODEL_NAME:
        return RoleColonRenderer.name
    if renderer_name_from_model_name(model_name) is not None:
        return get_recommended_renderer_name(model_name)
    from cookbook.client.connection import connect
    from cookbook.tokenizer_utils import find_tokenizer, get_tokenizer

    tokenizer = find_tokenizer(model_name)
    if tokenizer is None:
        service = connect(base_url)
        try:
            tokenizer = get_tokenizer(model_name, service)
        finally:
            service.close()
    return get_recommended_renderer_name(model_name, tokenizer)


def get_recommended_lora_rank(model_name: str) -> int:
    """0 (full-weight training) for the random-init built-in model, else the usual LoRA rank.

    A LoRA adapter on random weights cannot learn a task: there are no features to adapt.
    """
    return 0 if model_kind(model_name) == "random_init" else DEFAULT_LORA_RANK
