"""Renderers by name, so configs and checkpoints can name their chat format with a string."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cookbook.renderers.base import Renderer
from cookbook.renderers.chatml import ChatMLRenderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.qwen3 import Qwen3Renderer
from cookbook.renderers.role_colon import RoleColonRenderer
from cookbook.tokenizer_utils import Tokenizer

RendererFactory = Callable[[Tokenizer], Renderer]


class UnknownRendererError(ValueError):
    """No renderer is registered under that name."""


_factories: dict[str, RendererFactory] = {
    cls.name: cls for cls in (RoleColonRenderer, ChatMLRenderer, Llama3Renderer, Qwen3Renderer)
}
_lock = threading.Lock()


def register_renderer(name: str, factory: RendererFactory, *, overwrite: bool = False) -> None:
    """Make `get_renderer(name, tokenizer)` call `factory(tokenizer)`.

    Replacing an existing name needs `overwrite=True`, so a typo cannot silently shadow a
    built-in format.
    """
    with _lock:
        if name in _factories and not overwrite:
            raise ValueError(f"a renderer named {name!r} is already registered (pass overwrite=True)")
        _factories[name] = factory


def get_renderer(name: str, tokenizer: Tokenizer) -> Renderer:
    """The renderer registered as `name`, bound to `tokenizer`."""
    with _lock:
        factory = _factories.get(name)
    if factory is None:
        raise UnknownRendererError(f"unknown renderer {name!r}; known: {', '.join(renderer_names())}")
    return factory(tokenizer)


def renderer_names() -> list[str]:
    with _lock:
        return sorted(_factories)


def recommended_renderer_name(model_name: str) -> str:
    """The chat format a model was trained with, guessed from its name; role_colon otherwise.

    Base models (and the built-in tiny model) have no chat format of their own, so they get
    the plain-text role_colon format.
    """
    lowered = model_name.lower()
    if "base" in lowered.replace("-", " ").split():
        return RoleColonRenderer.name
    if "llama-3" in lowered and "instruct" in lowered:
        return Llama3Renderer.name
    if "qwen3" in lowered:
        return Qwen3Renderer.name
    if ("smollm" in lowered or "qwen2" in lowered) and "instruct" in lowered:
        return ChatMLRenderer.name
    return RoleColonRenderer.name
