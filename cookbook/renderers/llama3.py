"""`llama3`: the Llama 3 instruct format.

"<|begin_of_text|>" once, then per message
"<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>"; a turn ends with the
`<|eot_id|>` token. No default system message and no tool calling.
"""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.renderers.base import Renderer
from cookbook.renderers.types import Message, ParseTermination, RenderContext, RenderedMessage
from cookbook.tokenizer_utils import Tokenizer


class Llama3Renderer(Renderer):
    """Header tokens around the role, `<|eot_id|>` after each message.

    Parsing: one `<|eot_id|>` at the end is STOP_SEQUENCE; none is MALFORMED (or EOS if the
    tokenizer's separate EOS token ends the tokens); tokens after `<|eot_id|>` are MALFORMED
    rather than an exception, so a rollout never crashes on what a model wrote.
    """

    name = "llama3"

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self.begin_of_text = self.special_token_id("<|begin_of_text|>")
        self.start_header = self.special_token_id("<|start_header_id|>")
        self.end_header = self.special_token_id("<|end_header_id|>")
        self.eot = self.special_token_id("<|eot_id|>")

    @property
    def bos_tokens(self) -> list[int]:
        return [self.begin_of_text]

    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        header = self.encode(self.start_header, message["role"], self.end_header, "\n\n")
        return RenderedMessage(header=header, output=self.encode(message["content"], self.eot))

    def get_stop_sequences(self) -> list[int]:
        return [self.eot]

    def parse_response(self, tokens: Sequence[int]) -> tuple[Message, ParseTermination]:
        content, ended = self.parse_at_stop_token(tokens, self.eot)
        return Message(role="assistant", content=content), ended
