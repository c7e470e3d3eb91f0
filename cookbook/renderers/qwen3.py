"""`qwen3`: ChatML with Qwen3's thinking markers, thinking switched off.

Qwen3's own template (with enable_thinking=False) opens the generated assistant turn with an
empty think block, "<|im_start|>assistant\n<think>\n\n</think>\n\n", and renders assistant
messages of earlier turns (before the last user message) without any think block. We follow it:

- generation prompt: the assistant header *including* the empty think block, so the model
  writes only the answer;
- assistant messages after the last user message (the final turn, i.e. what a supervised
  example trains): the same header with the empty think block, which is therefore never
  trained, and the answer + `<|im_end|>` as output;
- earlier assistant messages: plain ChatML, no think block.

The result is the exact text Qwen3's template gives, and a supervised example of a
conversation equals its generation prompt plus the sampled answer. Because earlier turns lose
their think block when a new user message arrives, a turn's prompt is not a prefix of the next
one (no extension property): train multi-turn data per final turn (LAST_ASSISTANT_MESSAGE).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cookbook.renderers.chatml import ChatMLRenderer
from cookbook.renderers.types import Message, ParseTermination, RenderContext, RenderedMessage

EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"
_LEADING_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


class Qwen3Renderer(ChatMLRenderer):
    """Qwen3 chat format in non-thinking mode."""

    name = "qwen3"

    @property
    def has_extension_property(self) -> bool:
        return False

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        rendered = super().render_message(message, ctx)
        in_final_turn = ctx.last_user_idx is None or ctx.idx > ctx.last_user_idx
        if message["role"] != "assistant" or not in_final_turn:
            return rendered
        return RenderedMessage(
            header=rendered.header + self.encode(EMPTY_THINK_BLOCK), output=rendered.output
        )

    def parse_response(self, tokens: Sequence[int]) -> tuple[Message, ParseTermination]:
        """As ChatML; a think block the model wrote anyway is dropped from the content."""
        message, ended = super().parse_response(tokens)
        return Message(
            role="assistant", content=_LEADING_THINK_BLOCK.sub("", message["content"], count=1)
        ), ended
