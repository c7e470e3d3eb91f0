"""The Renderer base: one path from messages to tokens for SFT, preference models, RL and DPO.

A format only says how one message becomes header/output tokens, what stops sampling, and how
sampled tokens become a message again. Building generation prompts and supervised examples is
written once here, so the tokens a model is trained on are exactly the tokens it is prompted
with at sampling time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from cookbook.client.types import EncodedTextChunk, ModelInput
from cookbook.renderers.types import Message, ParseTermination, RenderContext, RenderedMessage, TrainOnWhat
from cookbook.tokenizer_utils import Tokenizer

MEMOISED_TEXTS = 4096
"""Texts whose tokens a renderer remembers: a whole RL step's prompts and answers, a bounded memory."""


class Renderer(ABC):
    """Turns conversations into model inputs and sampled tokens back into messages."""

    name: ClassVar[str] = ""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    # -- what each format defines --------------------------------------------------------------

    @abstractmethod
    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        """One message as header / output / stop_overlap tokens."""

    @abstractmethod
    def get_stop_sequences(self) -> list[str] | list[int]:
        """What ends a sampled turn: strings (matched on text) or token ids."""

    @abstractmethod
    def parse_response(self, tokens: Sequence[int]) -> tuple[Message, ParseTermination]:
        """A sampled continuation of a generation prompt as an assistant message."""

    @property
    def bos_tokens(self) -> list[int]:
        """Tokens that open every sequence."""
        return []

    @property
    def has_extension_property(self) -> bool:
        """True when each turn's prompt is a prefix of the next one (turns can share one datum)."""
        return False

    def generation_suffix(self, role: str, ctx: RenderContext) -> list[int]:
        """Tokens after the conversation that open the turn to generate: the role's header."""
        return self.render_message(Message(role=role, content=""), ctx).header

    # -- written once for every format ---------------------------------------------------------

    def build_generation_prompt(
        self, messages: Sequence[Message], role: str = "assistant", prefill: str | None = None
    ) -> ModelInput:
        """The prompt to sample the next `role` message from (optionally with its first words)."""
        _check_messages(messages, None)
        pieces = [self.bos_tokens]
        last_user = _last_user_idx(messages)
        for idx, message in enumerate(messages):
            rendered = self.render_message(message, _context(messages, idx, last_user))
            pieces += [rendered.header, rendered.output]
        suffix_ctx = RenderContext(
            idx=len(messages),
            is_last=True,
            prev_message=messages[-1] if messages else None,
            last_user_idx=last_user,
        )
        pieces.append(self.generation_suffix(role, suffix_ctx))
        if prefill:
            pieces.append(self.encode(prefill))
        return _model_input(pieces)

    def build_supervised_example(
        self,
        messages: Sequence[Message],
        train_on_what: TrainOnWhat = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[ModelInput, np.ndarray]:
        """The conversation's tokens and a float32 weight per token (unshifted: weight i is token i's).

        The last message's stop_overlap is appended with that message's weight, so a trained
        final answer includes the whole stop sequence the sampler will wait for.
        """
        train_on_what = TrainOnWhat(train_on_what)
        _check_messages(messages, train_on_what)
        if not messages:
            raise ValueError("cannot build a supervised example from an empty conversation")
        trained = _trained_messages(messages, train_on_what)
        header_weight = 1.0 if train_on_what == TrainOnWhat.ALL_TOKENS else 0.0
        pieces: list[tuple[list[int], float]] = [(self.bos_tokens, 0.0)]
        last_user = _last_user_idx(messages)
        for idx, message in enumerate(messages):
            rendered = self.render_message(message, _context(messages, idx, last_user))
            weight = 1.0 if trained[idx] else 0.0
            pieces += [(rendered.header, header_weight), (rendered.output, weight)]
            if idx == len(messages) - 1:
                pieces.append((rendered.stop_overlap, weight))
        weights = np.concatenate([np.full(len(tokens), w, dtype=np.float32) for tokens, w in pieces])
        return _model_input([tokens for tokens, _ in pieces]), weights

    # -- helpers for formats -------------------------------------------------------------------

    def encode(self, *parts: str | int) -> list[int]:
        """Token ids of text pieces (encoded separately, no special tokens added) and literal ids.

        Texts are memoised: a judge renders each answer in several matchups and a format's role
        headers recur in every message, and the tokenizer call is most of a rendering's cost.
        """
        memo: dict[str, tuple[int, ...]] = self.__dict__.setdefault("_text_tokens", {})
        ids: list[int] = []
        for part in parts:
            if isinstance(part, int):
                ids.append(part)
            elif part:
                tokens = memo.get(part)
                if tokens is None:
                    if len(memo) >= MEMOISED_TEXTS:
                        memo.clear()  # clearing at once stays safe when threads share a renderer
                    tokens = memo[part] = tuple(self.tokenizer.encode(part, add_special_tokens=False))
                ids += tokens
        return ids

    def special_token_id(self, token: str) -> int:
        """The id of a token this format needs; a clear error if the tokenizer lacks it."""
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None:
            raise ValueError(
                f"the {self.name or type(self).__name__} format needs the token {token!r}, "
                f"which tokenizer {self.tokenizer.name_or_path!r} does not have"
            )
        return token_id

    def split_trailing_eos(self, tokens: Sequence[int]) -> tuple[list[int], bool]:
        """The tokens without a final EOS token, and whether there was one."""
        tokens = list(tokens)
        eos = self.tokenizer.eos_token_id
        if tokens and eos is not None and tokens[-1] == eos:
            return tokens[:-1], True
        return tokens, False

    def parse_at_stop_token(self, tokens: Sequence[int], stop_token: int) -> tuple[str, ParseTermination]:
        """Text before a stop token, for formats that end a turn with one special token.

        The sampler keeps the stop token and stops there, so a clean answer ends with exactly
        one; text after it means the tokens did not come from one sampled turn (MALFORMED).
        Without it, a final EOS is a clean EOS ending, anything else was cut off.
        """
        tokens = list(tokens)
        if stop_token in tokens:
            end = tokens.index(stop_token)
            ended = ParseTermination.STOP_SEQUENCE if end == len(tokens) - 1 else ParseTermination.MALFORMED
            return self.tokenizer.decode(tokens[:end]), ended
        body, had_eos = self.split_trailing_eos(tokens)
        return self.tokenizer.decode(body), ParseTermination.EOS if had_eos else ParseTermination.MALFORMED

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokenizer={self.tokenizer.name_or_path!r})"


def _model_input(pieces: Sequence[list[int]]) -> ModelInput:
    """One text chunk per non-empty piece (an empty chunk is rejected by servers)."""
    return ModelInput(chunks=[EncodedTextChunk(tokens=list(p)) for p in pieces if p])


def _context(messages: Sequence[Message], idx: int, last_user_idx: int | None) -> RenderContext:
    return RenderContext(
        idx=idx,
        is_last=idx == len(messages) - 1,
        prev_message=messages[idx - 1] if idx > 0 else None,
        last_user_idx=last_user_idx,
    )


def _last_user_idx(messages: Sequence[Message]) -> int | None:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)


def _check_messages(messages: Sequence[Message], train_on_what: TrainOnWhat | None) -> None:
    """Reject malformed messages early, naming the offending one."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}"
            )
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise ValueError(f"messages[{i}].{key} must be a string, got {message.get(key)!r:.80}")
        if train_on_what is None:
            continue
        if train_on_what == TrainOnWhat.CUSTOMIZED and not isinstance(message.get("trainable"), bool):
            raise ValueError(f"messages[{i}] needs a boolean 'trainable' field with TrainOnWhat.CUSTOMIZED")
        if train_on_what != TrainOnWhat.CUSTOMIZED and "trainable" in message:
            raise ValueError(
                f"messages[{i}] has a 'trainable' field, which only TrainOnWhat.CUSTOMIZED "
                f"reads; use CUSTOMIZED or drop the field (train_on_what={train_on_what.value})"
            )


def _trained_messages(messages: Sequence[Message], train_on_what: TrainOnWhat) -> list[bool]:
    """Whether each message's output is trained."""
    roles = [m["role"] for m in messages]
    match train_on_what:
        case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
            last = max((i for i, r in enumerate(roles) if r == "assistant"), default=None)
            return [i == last for i in range(len(roles))]
        case TrainOnWhat.LAST_ASSISTANT_TURN:
            last_user = _last_user_idx(messages)
            start = -1 if last_user is None else last_user
            return [r == "assistant" and i > start for i, r in enumerate(roles)]
        case TrainOnWhat.ALL_ASSISTANT_MESSAGES:
            return [r == "assistant" for r in roles]
        case TrainOnWhat.ALL_MESSAGES | TrainOnWhat.ALL_TOKENS:
            return [True] * len(roles)
        case TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
            return [r in ("user", "system") for r in roles]
        case TrainOnWhat.CUSTOMIZED:
            return [bool(m["trainable"]) for m in messages]
    raise ValueError(f"unknown train_on_what {train_on_what!r}")
