"""Sampled sequences as OpenAI chat completions: the answer text, its finish reason, logprobs, usage,
and the same answer as `chat.completion.chunk` events for `stream: true`.

The sampler returns a turn's tokens with what stopped it (an EOS/stop token, or a stop string
that may end inside a token). The answer is the text before that stop, as OpenAI reports it, and a
stream's deltas are that text split at token boundaries (a character split across tokens goes out
with the token that completes it), so the deltas always join to the non-streamed answer.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cookbook.client import types

OBJECT_COMPLETION = "chat.completion"
OBJECT_CHUNK = "chat.completion.chunk"


@dataclass(frozen=True)
class Answer:
    """One choice: its text as deltas per token, and what the sampler reported."""

    deltas: list[str]
    finish_reason: str  # "stop" | "length"
    logprobs: list[dict[str, Any]] | None
    generated_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def read_answer(
    sequence: types.SampledSequence,
    table: Sequence[bytes],
    stop_strings: Sequence[str],
    answer_prefix: str,
    with_logprobs: bool,
) -> Answer:
    """The answer after the format's `answer_prefix` and before the turn's stop: a stopped turn ended
    at the first stop string, or else at its last token (an EOS or stop id)."""
    tokens = sequence.tokens
    pieces = [table[t] if 0 <= t < len(table) else b"" for t in tokens]
    stopped = sequence.stop_reason == "stop"
    whole = b"".join(pieces)
    end = len(whole)
    if stopped:
        found = [at for at in (whole.find(s.encode()) for s in stop_strings) if at >= 0]
        end = min(found) if found else end - (len(pieces[-1]) if pieces else 0)
    start = len(answer_prefix.encode()) if whole[:end].startswith(answer_prefix.encode()) else 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    deltas: list[str] = []
    logprobs: list[dict[str, Any]] = []
    offset = 0
    for index, piece in enumerate(pieces):
        if offset >= end:
            break
        deltas.append(decoder.decode(piece[max(0, start - offset) : end - offset]))
        if with_logprobs and sequence.logprobs is not None:
            logprobs.append(
                {
                    "token": piece.decode("utf-8", errors="replace"),
                    "logprob": sequence.logprobs[index],
                    "bytes": list(piece),
                    "top_logprobs": [],
                }
            )
        offset += len(piece)
    tail = decoder.decode(b"", final=True)
    if tail:
        deltas.append(tail)
    return Answer(
        deltas=deltas,
        finish_reason="stop" if stopped else "length",
        logprobs=logprobs if with_logprobs else None,
        generated_tokens=len(tokens),
    )


def usage(prompt_tokens: int, answers: Sequence[Answer]) -> dict[str, int]:
    completion = sum(answer.generated_tokens for answer in answers)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def _logprobs_field(content: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if content is None else {"content": content, "refusal": None}


def completion_body(
    completion_id: str, created: int, model: str, prompt_tokens: int, answers: Sequence[Answer]
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": OBJECT_COMPLETION,
        "created": created,
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": _logprobs_field(answer.logprobs),
                "finish_reason": answer.finish_reason,
            }
            for index, answer in enumerate(answers)
        ],
        "usage": usage(prompt_tokens, answers),
    }


def stream_events(
    completion_id: str,
    created: int,
    model: str,
    prompt_tokens: int,
    answers: Sequence[Answer],
    include_usage: bool,
) -> Iterator[bytes]:
    """Server-Sent Events: per choice a role chunk, one chunk per delta, a finish chunk; then [DONE]."""

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": completion_id, "object": OBJECT_CHUNK, "created": created, "model": model}
        chunk["choices"] = choices
        chunk.update(extra)
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def choice(index: int, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None} | extra

    for index, answer in enumerate(answers):
        yield event([choice(index, {"role": "assistant", "content": ""})])
        for position, delta in enumerate(answer.deltas):
            logprobs = None
            if answer.logprobs is not None and position < len(answer.logprobs):
                logprobs = _logprobs_field([answer.logprobs[position]])
            yield event([choice(index, {"content": delta}, logprobs=logprobs)])
        yield event([choice(index, {}, finish_reason=answer.finish_reason)])
    if include_usage:
        yield event([], usage=usage(prompt_tokens, answers))
    yield b"data: [DONE]\n\n"
