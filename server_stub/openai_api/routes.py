"""The OpenAI-compatible routes: `GET /v1/models` and `POST /v1/chat/completions`.

`model` is a base model this server serves or a `tinker://<run>/sampler_weights/<name>` path.
The conversation is rendered in the base model's chat format (chat_format.py), sampled as one
ordinary sample request with `n` rows on the shared sampler of that model or checkpoint, so it
batches with every other client's sampling, and answered in OpenAI's shapes (completions.py).
A streamed answer goes out as it is sampled (live_stream.py), in chunk events that join to the
non-streamed answer; with `logprobs` it is sent once the sample request is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from cookbook.client import types
from server_stub.config import ServerConfig
from server_stub.engine import Engine, NotFoundError, SampleJob, UserError
from server_stub.openai_api import wire
from server_stub.openai_api.chat_format import ChatFormat
from server_stub.openai_api.completions import Answer, completion_body, read_answer, stream_events
from server_stub.openai_api.errors import (
    ROUTE_PREFIX,
    SERVER_ERROR,
    OpenAIRequestError,
    from_user_error,
    openai_error,
)
from server_stub.openai_api.live_stream import ChunkWriter, LiveAnswer, TokenEvent, live_stream_events
from server_stub.scheduler import Scheduler
from server_stub.validation import check_sample_request

logger = logging.getLogger("server_stub.openai_api")
PREFIX = ROUTE_PREFIX.rstrip("/")
PATHS = (f"{PREFIX}/models", f"{PREFIX}/chat/completions")
OWNER = "server_stub"

SamplerFor = Callable[[str | None, str | None], Awaitable[str]]
"""(base_model, model_path) -> the id of the shared sampler for it, created on first use."""

SAMPLE_FIELD_PARAMS = {
    "num_samples": "n",
    "prompt": "messages",
    "sampling_params.temperature": "temperature",
    "sampling_params.top_p": "top_p",
    "sampling_params.seed": "seed",
    "sampling_params.stop": "stop",
}
"""Sample-request fields as the OpenAI parameter a client set (max_tokens is named per request)."""


def _as_openai(exc: UserError, limit_param: str) -> UserError:
    """A sample-request refusal renamed to the OpenAI parameter it came from."""
    params = SAMPLE_FIELD_PARAMS | {"sampling_params.max_tokens": limit_param}
    param = params.get(exc.field or "")
    if param is None:
        return exc
    return OpenAIRequestError(exc.message.replace(exc.field or "", param, 1), param, exc.status_code)


def openai_router(
    engine: Engine, scheduler: Scheduler, config: ServerConfig, sampler_for: SamplerFor
) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    formats: dict[str, ChatFormat] = {}
    formats_lock = threading.Lock()

    def chat_format(base_model: str) -> ChatFormat:
        with formats_lock:
            if base_model not in formats:
                formats[base_model] = ChatFormat(engine.tokenizer(base_model))
            return formats[base_model]

    def resolve(model: str) -> tuple[str, str | None]:
        """(base model, checkpoint path or None); 404 naming `model` for one this server lacks."""
        try:
            if model.startswith(types.TINKER_SCHEME):
                return engine.weights_info(model).base_model, model
            engine.model_limits(model)
            return model, None
        except UserError as exc:
            raise OpenAIRequestError(
                f"model {model!r} not found: {exc.message}", "model", 404, "model_not_found"
            ) from None

    def submit(
        sampler_id: str, request: types.SampleRequest, tokens: asyncio.Queue[TokenEvent | None] | None = None
    ) -> asyncio.Future[types.SampleResponse]:
        """Queue the sample request; with `tokens`, each sampled token is put there as it comes, then None."""
        done: concurrent.futures.Future[types.SampleResponse] = concurrent.futures.Future()
        loop = asyncio.get_running_loop()

        def put(event: TokenEvent | None) -> None:
            if tokens is not None and not loop.is_closed():
                loop.call_soon_threadsafe(tokens.put_nowait, event)

        def finish(result: Any, exc: BaseException | None) -> None:
            if exc is None:
                done.set_result(result)
            else:
                done.set_exception(exc)
            put(None)

        on_token = None if tokens is None else lambda index, token: put((index, token))
        scheduler.submit_sample(SampleJob(sampler_id, request, on_token), finish)
        return asyncio.wrap_future(done)

    async def complete(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > config.max_request_bytes:
            raise OpenAIRequestError(f"the body is over {config.max_request_bytes} bytes", None, 413)
        req = wire.parse_request(raw)
        req.check_supported()
        base_model, model_path = resolve(req.model)
        messages, stops = req.chat_messages(), req.stop_strings()
        chat = await run_in_threadpool(chat_format, base_model)
        prompt = await run_in_threadpool(chat.render, messages)
        max_tokens, limit_param = req.completion_limit()
        all_stops = [*chat.stop_strings, *stops]
        sample_request = types.SampleRequest(
            num_samples=req.n if req.n is not None else 1,
            prompt=types.ModelInput.from_ints(prompt),
            sampling_params=types.SamplingParams(
                max_tokens=max_tokens,
                seed=req.seed,
                stop=all_stops or None,
                temperature=req.temperature if req.temperature is not None else 1.0,
                top_p=req.top_p if req.top_p is not None else 1.0,
            ),
        )
        try:
            check_sample_request(sample_request, engine.model_limits(base_model), config.max_num_samples)
        except UserError as exc:
            raise _as_openai(exc, limit_param) from None
        try:
            sampler_id = await sampler_for(None if model_path else base_model, model_path)
        except NotFoundError as exc:
            raise OpenAIRequestError(exc.message, "model", 404, "model_not_found") from None
        table = chat.token_bytes.table

        def answers_of(result: types.SampleResponse) -> list[Answer]:
            return [
                read_answer(seq, table, all_stops, chat.answer_prefix, bool(req.logprobs))
                for seq in result.sequences
            ]

        completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        include_usage = req.stream_options is not None and req.stream_options.include_usage
        if req.stream and not req.logprobs:
            tokens: asyncio.Queue[TokenEvent | None] = asyncio.Queue()
            pending = submit(sampler_id, sample_request, tokens)
            first = await tokens.get()
            if first is None:
                await pending  # a request refused before its first token is answered as an error
            live = [
                LiveAnswer(table, all_stops, chat.answer_prefix) for _ in range(sample_request.num_samples)
            ]
            events = live_stream_events(
                ChunkWriter(completion_id, created, req.model),
                live,
                first,
                tokens,
                pending,
                answers_of,
                len(prompt),
                include_usage,
            )
            return StreamingResponse(events, media_type="text/event-stream")
        answers = answers_of(await submit(sampler_id, sample_request))
        if req.stream:
            events = stream_events(completion_id, created, req.model, len(prompt), answers, include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(completion_body(completion_id, created, req.model, len(prompt), answers))

    @router.get("/models")
    async def list_models() -> Response:
        models = [
            {"id": model.model_name, "object": "model", "created": 0, "owned_by": OWNER}
            for model in engine.supported_models()
        ]
        return JSONResponse({"object": "list", "data": models})

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            return await complete(request)
        except UserError as exc:
            return from_user_error(exc)
        except Exception as exc:  # the sampler's own failure: answered in OpenAI's shape too
            logger.exception("chat completion failed")
            return openai_error(500, f"{type(exc).__name__}: {exc}", kind=SERVER_ERROR)

    return router
