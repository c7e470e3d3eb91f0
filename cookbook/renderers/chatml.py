"""`chatml`: the SmolLM2 / Qwen2.5 instruct format.

Text: "<|im_start|>role\ncontent<|im_end|>\n" per message, generation prompt ending in
"<|im_start|>assistant\n"; a turn ends with the `<|im_end|>` token. The newline that separates
messages is rendered at the start of the *next* header rather than after `<|im_end|>`, so an
assistant output ends exactly where the sampler stops and each prompt is a prefix of the next.
No default system message is inserted (SmolLM2's and Qwen2.5's templates add one; pass it
explicitly if a model expects it).
"""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.renderers.base import Renderer
from cookbook.renderers.types import Message, ParseTermination, RenderContext, RenderedMessage
from cookbook.tokenizer_utils import Tokenizer

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


class ChatMLRenderer(Renderer):
    """ChatML turns delimited by the `<|im_start|>` / `<|im_end|>` special tokens."""

    name = "chatml"

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self.im_start = self.special_token_id(IM_START)
        self.im_end = self.special_token_id(IM_END)

    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        header = self.encode("\n" if ctx.idx > 0 else "", self.im_start, message["role"] + "\n")
        return RenderedMessage(header=header, output=self.encode(message["content"], self.im_end))

    def get_stop_sequences(self) -> list[int]:
        return [self.im_end]

    def parse_response(self, tokens: Sequence[int]) -> tuple[Message, ParseTermination]:
        content, ended = self.parse_at_stop_token(tokens, self.im_end)
        return Message(role="assistant", content=content), ended
