"""Does a renderer reproduce a model's own chat template? Checked on one probe conversation.

The probe has a system message (templates that add a default one then add none), two user turns
and two answers. A renderer reproduces the template when every generation prompt it builds is the
template's text with the generation prompt added, and the whole conversation it builds for training
is the template's text up to trailing whitespace.
"""

from __future__ import annotations

from cookbook.renderers.base import Renderer
from cookbook.renderers.chat_template import ChatTemplateError, render_chat_template
from cookbook.renderers.types import Message, TrainOnWhat

PROBE_CONVERSATION: tuple[Message, ...] = (
    Message(role="system", content="You are a helpful assistant."),
    Message(role="user", content="What is the capital of France?"),
    Message(role="assistant", content="The capital of France is Paris."),
    Message(role="user", content="And of Italy?"),
    Message(role="assistant", content="Rome."),
)


def reproduces_chat_template(renderer: Renderer) -> bool:
    """True when `renderer` renders the probe conversation exactly as its tokenizer's chat template does.

    Raises ChatTemplateError when the tokenizer has no template or the template refuses the probe.
    """
    tokenizer = renderer.tokenizer
    for end, message in enumerate(PROBE_CONVERSATION):
        if message["role"] != "user":
            continue
        prompt = list(PROBE_CONVERSATION[: end + 1])
        expected = render_chat_template(tokenizer, prompt, add_generation_prompt=True)
        if tokenizer.decode(renderer.build_generation_prompt(prompt).to_ints()) != expected:
            return False
    whole = list(PROBE_CONVERSATION)
    expected = render_chat_template(tokenizer, whole, add_generation_prompt=False)
    tokens, _ = renderer.build_supervised_example(whole, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    rendered = tokenizer.decode(tokens.to_ints())
    return expected.startswith(rendered) and not expected[len(rendered) :].strip()


__all__ = ["PROBE_CONVERSATION", "ChatTemplateError", "reproduces_chat_template"]
