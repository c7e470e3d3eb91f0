"""Renderers by name, so configs and checkpoints can name their chat format with a string."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cookbook.renderers.base import Renderer
from cookbook.renderers.chat_template import ChatTemplateError
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
# (model, name's choice, template, bos, eos) -> the renderer chosen, so each mismatch is logged once.
_judged: dict[tuple[str, str | None, str | None, str | None, str | None], str] = {}
logger = logging.getLogger(__name__)


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


def renderer_name_from_model_name(model_name: str) -> str | None:
    """The chat format a model's name says it was trained with; None when the name says nothing.

    Base models have no chat format of their own: their names say role_colon.
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
    return None


def recommended_renderer_name(model_name: str, tokenizer: Tokenizer | None = None) -> str:
    """The chat format to render `model_name` with; role_colon when nothing says otherwise.

    The name decides when it says something. Otherwise the model's own chat template (the
    tokenizer's, as the server sends it) picks the first registered renderer that reproduces it on
    a probe conversation. A chosen renderer that does not reproduce the model's template, or a
    template no renderer reproduces, is logged as a warning naming both.
    """
    by_name = renderer_name_from_model_name(model_name)
    template = tokenizer.chat_template if tokenizer is not None else None
    if tokenizer is None or template is None:
        return by_name or RoleColonRenderer.name
    return _judged_choice(model_name, by_name, tokenizer)


def _judged_choice(model_name: str, by_name: str | None, tokenizer: Tokenizer) -> str:
    key = (model_name, by_name, tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
    with _lock:
        known = _judged.get(key)
    if known is not None:
        return known
    try:
        matching = [name for name in renderer_names() if _reproduces(name, tokenizer)]
    except ChatTemplateError as exc:
        chosen = by_name or RoleColonRenderer.name
        logger.warning(
            "model %r: cannot check renderer %r against the model's chat template (%s)",
            model_name,
            chosen,
            exc,
        )
    else:
        chosen = by_name or (matching[0] if matching else RoleColonRenderer.name)
        if chosen not in matching:
            logger.warning(
                "model %r: renderer %r does not reproduce the model's own chat template on a probe "
                "conversation (renderers that do: %s); pass renderer_name explicitly if this is intended",
                model_name,
                chosen,
                ", ".join(matching) or "none",
            )
    with _lock:
        _judged[key] = chosen
    return chosen


def _reproduces(name: str, tokenizer: Tokenizer) -> bool:
    """True when renderer `name` reproduces the tokenizer's chat template (False if it cannot be built)."""
    from cookbook.renderers.template_probe import reproduces_chat_template

    try:
        renderer = get_renderer(name, tokenizer)
    except (ValueError, KeyError):
        return False
    return reproduces_chat_template(renderer)
