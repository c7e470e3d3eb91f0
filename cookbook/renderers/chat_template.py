"""A model's own chat template (Jinja, from its tokenizer config), rendered on the client with jinja2.

The environment follows the one Hugging Face templates are written for: trimmed blocks, a sandbox,
`raise_exception`, the `tojson` filter and the special tokens as variables.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import jinja2

    from cookbook.renderers.types import Message
    from cookbook.tokenizer_utils import Tokenizer


class ChatTemplateError(ValueError):
    """The template refused the conversation (its own `raise_exception`) or is not valid Jinja."""


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


@functools.lru_cache(maxsize=16)
def _compiled(template: str) -> jinja2.Template:
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(
    tokenizer: Tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool
) -> str:
    """The text the model's template makes of `messages` (and of the opening of the next assistant turn)."""
    import jinja2

    if tokenizer.chat_template is None:
        raise ChatTemplateError(f"the tokenizer {tokenizer.name_or_path!r} has no chat template")
    try:
        return _compiled(tokenizer.chat_template).render(
            messages=[dict(message) for message in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=tokenizer.bos_token or "",
            eos_token=tokenizer.eos_token or "",
            pad_token=tokenizer.pad_token or "",
            tools=None,
            documents=None,
        )
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template of {tokenizer.name_or_path!r} failed: {exc}") from exc
