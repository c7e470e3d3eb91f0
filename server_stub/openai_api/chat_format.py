"""A base model's chat format on the server: messages -> prompt tokens, plus the text that ends a turn.

A model whose tokenizer carries a chat template is rendered with it (transformers'
`apply_chat_template`, so the prompt is exactly what the model was tuned on) and its turns end at
its EOS tokens, which the sampler always stops on. A model without one (the built-in tiny model,
base models) gets the project's `role_colon` format: "Role:" headers and " content\\n\\n" outputs,
each encoded on its own as the cookbook's renderer does, ending a turn at "\\n\\nUser:".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.models.token_bytes import TokenBytes

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

ROLE_COLON_STOP = "\n\nUser:"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


class ChatFormat:
    """How one base model's conversations become prompts, and how its sampled bytes read back."""

    def __init__(self, files: types.TokenizerResponse):
        from tokenizers import Tokenizer

        self._tokenizer: Tokenizer = Tokenizer.from_str(files.tokenizer_json)
        self._files = files
        self._templated: PreTrainedTokenizerBase | None = None
        self.token_bytes = TokenBytes(files.tokenizer_json)
        self.uses_template = files.chat_template is not None
        self.stop_strings: tuple[str, ...] = () if self.uses_template else (ROLE_COLON_STOP,)
        # role_colon writes " content": the space separates header and answer, it is not the answer
        self.answer_prefix = "" if self.uses_template else " "

    def render(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt that asks the model for the next assistant message."""
        if self.uses_template:
            return self._render_template(messages)
        return self._render_role_colon(messages)

    def _encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids if text else []

    def _render_role_colon(self, messages: Sequence[ChatMessage]) -> list[int]:
        bos = self._files.bos_token
        bos_id = self._tokenizer.token_to_id(bos) if bos is not None else None
        tokens = [] if bos_id is None else [bos_id]
        for message in messages:
            tokens += self._encode(message.role.capitalize() + ":")
            tokens += self._encode(" " + message.content + "\n\n")
        return tokens + self._encode("Assistant:")

    def _render_template(self, messages: Sequence[ChatMessage]) -> list[int]:
        from jinja2 import TemplateError

        try:
            text = self._template_tokenizer().apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages],
                tokenize=False,
                add_generation_prompt=True,
            )
        except TemplateError as exc:  # templates refuse e.g. roles out of order with raise_exception
            raise UserError(
                f"messages: the model's chat template refused them: {exc}", field="messages"
            ) from None
        assert isinstance(text, str)
        return self._encode(text)  # the template writes its special tokens itself

    def _template_tokenizer(self) -> PreTrainedTokenizerBase:
        if self._templated is None:
            from transformers import PreTrainedTokenizerFast

            files = self._files
            self._templated = PreTrainedTokenizerFast(
                tokenizer_object=self._tokenizer,
                bos_token=files.bos_token,
                eos_token=files.eos_token,
                pad_token=files.pad_token,
                chat_template=files.chat_template,
            )
        return self._templated
