"""Per-model defaults a recipe needs: which chat format to render with, and how to train.

The renderer choice itself lives with the renderers (`recommended_renderer_name`), so the two
never disagree; this module is the one place recipes ask "what suits model X?".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cookbook.renderers.registry import recommended_renderer_name, renderer_name_from_model_name
from cookbook.renderers.role_colon import RoleColonRenderer

if TYPE_CHECKING:
    from cookbook.tokenizer_utils import Tokenizer

BUILTIN_MODEL_NAME = "tiny-llama"
"""The server's built-in model: random init, so it has no chat format and learns only with full weights."""

DEFAULT_LORA_RANK = 32


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
    return 0 if model_name == BUILTIN_MODEL_NAME else DEFAULT_LORA_RANK
