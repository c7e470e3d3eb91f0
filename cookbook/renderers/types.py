"""The vocabulary shared by every chat format: messages, what to train on, how a response ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NotRequired, TypedDict


class Message(TypedDict):
    """One turn of a conversation. `trainable` is read only with `TrainOnWhat.CUSTOMIZED`."""

    role: str
    content: str
    trainable: NotRequired[bool]


class TrainOnWhat(StrEnum):
    """Which tokens of a rendered conversation get a non-zero training weight.

    Headers (role markers) are trained only with ALL_TOKENS. LAST_ASSISTANT_MESSAGE is the last
    message whose role is assistant (normally the final message); LAST_ASSISTANT_TURN is every
    assistant message after the last user message (the assistant's whole final turn).
    """

    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    ALL_USER_AND_SYSTEM_MESSAGES = "all_user_and_system_messages"
    CUSTOMIZED = "customized"


class ParseTermination(StrEnum):
    """How a sampled response ended.

    STOP_SEQUENCE: the format's own end-of-turn marker (the strict success RL rewards).
    EOS: the tokenizer's end-of-sequence token without the marker; a clean ending for base
    models, which often emit EOS instead. MALFORMED: neither (cut off by max_tokens, or text
    after the marker).
    """

    STOP_SEQUENCE = "stop_sequence"
    EOS = "eos"
    MALFORMED = "malformed"

    @property
    def is_clean(self) -> bool:
        return self is not ParseTermination.MALFORMED

    @property
    def is_stop_sequence(self) -> bool:
        return self is ParseTermination.STOP_SEQUENCE


@dataclass(frozen=True)
class RenderContext:
    """Where a message sits in its conversation (some formats render by position)."""

    idx: int
    is_last: bool
    prev_message: Message | None = None
    last_user_idx: int | None = None  # index of the conversation's last user message, if any


@dataclass(frozen=True)
class RenderedMessage:
    """A message as token ids, split so that training weights can be assigned per part.

    header: the role marker the model reads but does not write (weight 0 unless ALL_TOKENS).
    output: what the model writes for this message, including its end-of-turn marker.
    stop_overlap: tokens that complete the stop sequence but belong to the *next* message's
    header (role_colon's "User:"); appended only when this message ends the example, so that a
    trained example teaches the model to emit the whole stop sequence.
    """

    header: list[int]
    output: list[int]
    stop_overlap: list[int] = field(default_factory=list)
