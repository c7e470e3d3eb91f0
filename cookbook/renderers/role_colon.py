"""`role_colon`: "User: ...\n\nAssistant: ...\n\n", the format for base models and the built-in model.

Each message is a header "Role:" and an output " content\n\n". A turn ends with the text stop
sequence "\n\nUser:": the "\n\n" closes the assistant's output and "User:" is the next header,
so an assistant message carries "User:" as its stop_overlap and a trained final answer ends
with the full stop sequence. No special tokens besides BOS (only if the tokenizer has one).
"""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.renderers.base import Renderer
from cookbook.renderers.types import Message, ParseTermination, RenderContext, RenderedMessage

STOP_SEQUENCE = "\n\nUser:"


class RoleColonRenderer(Renderer):
    """Plain-text turns; works with any tokenizer."""

    name = "role_colon"

    @property
    def bos_tokens(self) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [] if bos is None else [bos]

    @property
    def has_extension_property(self) -> bool:
        return True

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        header = self.encode(message["role"].capitalize() + ":")
        output = self.encode(" " + message["content"] + "\n\n")
        overlap = self.encode("User:") if message["role"] == "assistant" else []
        return RenderedMessage(header=header, output=output, stop_overlap=overlap)

    def get_stop_sequences(self) -> list[str]:
        return [STOP_SEQUENCE]

    def parse_response(self, tokens: Sequence[int]) -> tuple[Message, ParseTermination]:
        """Split the decoded text on the stop sequence; a final EOS token is tolerated.

        One stop sequence at the very end is STOP_SEQUENCE; none with a final EOS is EOS (base
        models often end that way); none without EOS, more than one, or a stop sequence followed
        by EOS (the sampler should have stopped first) is MALFORMED.
        """
        body, had_eos = self.split_trailing_eos(tokens)
        parts = self.tokenizer.decode(body).split(STOP_SEQUENCE)
        content = parts[0].strip()
        if len(parts) == 1:
            ended = ParseTermination.EOS if had_eos else ParseTermination.MALFORMED
        elif len(parts) == 2 and not had_eos:
            ended = ParseTermination.STOP_SEQUENCE
        else:
            ended = ParseTermination.MALFORMED
        return Message(role="assistant", content=content), ended
