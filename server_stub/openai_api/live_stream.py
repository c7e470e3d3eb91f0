"""`stream: true` as it is generated: each choice's text goes out while the sampler is still sampling.

The sampler tells the route every token as it samples it (`SampleJob.on_token`, called on the
compute thread); the tokens are handed to the event loop and turned into chunk events at once. A
token's text is only sent once it cannot become part of the turn's stop: the newest token is held
back (it may be the EOS or stop token the answer leaves out), and so are the last bytes that could
still be the start of a stop string. When the sample request is done, the rest of each answer
(`read_answer`, the non-streamed answer) follows, so the deltas always join to that answer.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from cookbook.client import types
from server_stub.openai_api.completions import OBJECT_CHUNK, Answer, usage

logger = logging.getLogger("server_stub.openai_api")

TokenEvent = tuple[int, int]
"""(choice index, token id) as the sampler produced it."""


class LiveAnswer:
    """One choice's text so far, and how much of it is safe to send."""

    def __init__(self, table: Sequence[bytes], stop_strings: Sequence[str], answer_prefix: str):
        self.table = table
        self.stops = [s.encode() for s in stop_strings if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.prefix = answer_prefix.encode()
        self.pieces: list[bytes] = []
        self.sent_bytes = 0  # of the answer (after the prefix)
        self.sent_text = ""
        self.ended = False  # a stop string was seen: nothing more is sent live
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> str:
        """Take a sampled token; the text that has become safe to send ("" if none)."""
        self.pieces.append(self.table[token] if 0 <= token < len(self.table) else b"")
        if self.ended:
            return ""
        settled = b"".join(self.pieces[:-1])  # the newest token may be the turn's stop token
        if len(settled) < len(self.prefix) and self.prefix.startswith(settled):
            return ""
        start = len(self.prefix) if settled.startswith(self.prefix) else 0
        found = [at for at in (settled.find(stop) for stop in self.stops) if at >= 0]
        if found:
            end, self.ended = min(found), True
        else:
            end = len(settled) - self.hold
        end -= start
        if end <= self.sent_bytes:
            return ""
        text = self.decoder.decode(settled[start + self.sent_bytes : start + end])
        self.sent_bytes = end
        self.sent_text += text
        return text

    def rest(self, answer: Answer) -> str:
        """What the finished answer adds to the text already sent."""
        if not answer.text.startswith(self.sent_text):
            logger.error("a streamed answer went out of step with its final text; sending the difference")
            return answer.text[len(self.sent_text) :]
        return answer.text[len(self.sent_text) :]


class ChunkWriter:
    """`chat.completion.chunk` Server-Sent Events of one completion."""

    def __init__(self, completion_id: str, created: int, model: str):
        self.head = {"id": completion_id, "object": OBJECT_CHUNK, "created": created, "model": model}

    def event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**self.head, "choices": choices, **extra}).encode() + b"\n\n"

    def delta(self, index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.event([choice])


async def live_stream_events(
    writer: ChunkWriter,
    answers: list[LiveAnswer],
    first: TokenEvent | None,
    tokens: asyncio.Queue[TokenEvent | None],
    result: Awaitable[types.SampleResponse],
    finish: Callable[[types.SampleResponse], list[Answer]],
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """Role chunks, then each choice's text as it becomes safe to send, then the rest of every answer
    with its finish reason, the usage if asked for, and [DONE]. `first` is the first event already
    taken from `tokens`, which ends with None."""
    for index in range(len(answers)):
        yield writer.delta(index, {"role": "assistant", "content": ""})
    event = first
    while event is not None:
        index, token = event
        text = answers[index].add(token)
        if text:
            yield writer.delta(index, {"content": text})
        event = await tokens.get()
    try:
        response = await result
    except Exception as exc:  # the sampler failed after the stream began: the client reads an error event
        logger.exception("a streamed chat completion failed")
        yield (
            b"data: " + json.dumps({"error": {"message": f"{type(exc).__name__}: {exc}"}}).encode() + b"\n\n"
        )
        return
    finished = finish(response)
    for index, (live, answer) in enumerate(zip(answers, finished, strict=True)):
        rest = live.rest(answer)
        if rest:
            yield writer.delta(index, {"content": rest})
        yield writer.delta(index, {}, finish_reason=answer.finish_reason)
    if include_usage:
        yield writer.event([], usage=usage(prompt_tokens, finished))
    yield b"data: [DONE]\n\n"
