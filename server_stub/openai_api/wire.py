"""The request body of `POST /v1/chat/completions`, as OpenAI's clients send it.

Fields this server cannot honour (tools, penalties, biases, response formats) are declared so a
request that sets them is refused by name rather than silently answered without them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server_stub.openai_api.chat_format import ChatMessage
from server_stub.openai_api.errors import OpenAIRequestError

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
"""Accepted message roles -> the role the chat format renders (developer is the newer name for system)."""

UNSUPPORTED = (
    "tools",
    "functions",
    "tool_choice",
    "logit_bias",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: Any = None
    functions: Any = None
    tool_choice: Any = None
    logit_bias: Any = None
    response_format: Any = None
    frequency_penalty: Any = None
    presence_penalty: Any = None

    def chat_messages(self) -> list[ChatMessage]:
        """The conversation as role/text pairs; a refusal names the message at fault."""
        out = []
        for index, message in enumerate(self.messages):
            role = ROLES.get(message.role)
            if role is None:
                raise OpenAIRequestError(
                    f"messages[{index}].role: {message.role!r} is not supported; use one of {sorted(ROLES)}",
                    f"messages[{index}].role",
                )
            out.append(ChatMessage(role=role, content=_text(message.content, index)))
        return out

    def stop_strings(self) -> list[str]:
        stops = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if any(not stop for stop in stops):
            raise OpenAIRequestError("stop: stop strings must not be empty", "stop")
        return stops

    def completion_limit(self) -> tuple[int | None, str]:
        """The largest completion asked for and the parameter that asked (the newer name wins)."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    def check_supported(self) -> None:
        for name in UNSUPPORTED:
            if getattr(self, name):
                raise OpenAIRequestError(f"{name}: not supported by this server", name)
        if self.top_logprobs:
            raise OpenAIRequestError(
                "top_logprobs: not supported by this server (logprobs is)", "top_logprobs"
            )


def _text(content: str | list[ContentPart] | None, index: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise OpenAIRequestError(f"messages[{index}].content: is required", f"messages[{index}].content")
    for part in content:
        if part.type != "text" or part.text is None:
            raise OpenAIRequestError(
                f"messages[{index}].content: only text parts are supported, got {part.type!r}",
                f"messages[{index}].content",
            )
    return "".join(part.text or "" for part in content)


def parse_request(raw: bytes) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first.get("loc", ())) or None
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg"))
        raise OpenAIRequestError(message, param) from None
