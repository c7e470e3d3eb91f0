"""A burst of sample requests over HTTP: one `asample_batch` exchange (our extension).

The burst (`cookbook/client/sample_bursts.py`) goes as one body when the server lists
`EXTENSION_SAMPLE_BATCH`, and its one future's result holds each request's response or error. A
request alone, or a server without the extension (Tinker's), uses asample as before. A batch the server
refuses as a whole (one bad request in it) is sent again one request at a time, so only the bad one
fails.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cookbook.client import errors, types
from cookbook.client.http.transport import Pool, is_retryable_status
from cookbook.client.sample_bursts import Answer, Waiting, settle

if TYPE_CHECKING:
    from cookbook.client.http.transport import Transport

# The server may answer 429 while its sampling queue is full; the transport then backs off and retries.
BACKPRESSURE = {"X-Tinker-Sampling-Backpressure": "1"}


async def send_burst(transport: Transport, waiting: Waiting) -> None:
    """Send a burst: together when the server takes batches, else one request at a time."""
    if len(waiting) > 1 and await transport.offers(types.EXTENSION_SAMPLE_BATCH):
        await _send_together(transport, waiting)
    else:
        await _send_each(transport, waiting)


async def _send_together(transport: Transport, waiting: Waiting) -> None:
    batch = types.SampleBatchRequest(requests=[request for request, _ in waiting])
    try:
        request_id = await transport.submit("/asample_batch", batch, headers=BACKPRESSURE)
    except errors.APIStatusError as exc:
        if is_retryable_status(exc.status_code):
            raise
        await _send_each(transport, waiting)  # refused as a whole: each request gets its own answer
        return
    result = await transport.retrieve(request_id, types.SampleBatchResponse, pool=Pool.SAMPLE_POLL)
    if len(result.results) != len(waiting):
        raise errors.CookbookError(
            f"request {request_id}: asample_batch answered {len(result.results)} results for "
            f"{len(waiting)} requests"
        )
    for (_, answer), item in zip(waiting, result.results, strict=True):
        if item.response is not None:
            settle(answer, result=item.response)
        else:
            failure = errors.RequestFailedError(
                item.error or "failed without a message",
                request_id=request_id,
                category=item.category or types.RequestErrorCategory.Unknown,
            )
            settle(answer, exception=failure)


async def _send_each(transport: Transport, waiting: Waiting) -> None:
    await asyncio.gather(*(_send_one(transport, request, answer) for request, answer in waiting))


async def _send_one(transport: Transport, request: types.SampleRequest, answer: Answer) -> None:
    try:
        request_id = await transport.submit("/asample", request, headers=BACKPRESSURE)
        response = await transport.retrieve(request_id, types.SampleResponse, pool=Pool.SAMPLE_POLL)
    except Exception as exc:
        settle(answer, exception=exc)
    else:
        settle(answer, result=response)
