"""Fetching an operation's result: the retrieve_future loop.

The server holds each retrieve_future request open until the result is ready or its wait
expires; on expiry it answers `try_again` and we ask again at once. A failed operation comes
back as `{error, category}` and is raised as `RequestFailedError`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cookbook.client import errors, types
from cookbook.client.http import codec
from cookbook.client.http.transport import Pool, Transport

R = TypeVar("R", bound=BaseModel)


def _failure(data: dict[str, Any], request_id: str) -> errors.RequestFailedError:
    try:
        category = types.RequestErrorCategory(data.get("category"))
    except ValueError:
        category = types.RequestErrorCategory.Unknown
    return errors.RequestFailedError(str(data["error"]), request_id=request_id, category=category)


async def retrieve(transport: Transport, request_id: str, response_type: type[R],
                   pool: Pool = Pool.TRAIN_POLL) -> R:
    """Poll until the request `request_id` is done; its typed result or its error."""
    body = codec.encode(types.FutureRetrieveRequest(request_id=request_id))
    iteration = 0
    while True:
        data = await transport.post("/retrieve_future", body, pool=pool,
                                    headers={"X-Tinker-Request-Iteration": str(iteration)})
        iteration += 1
        if isinstance(data, dict):
            if data.get("type") == "try_again" or data.get("status") == "complete_metadata":
                continue
            if "error" in data and "category" in data:
                raise _failure(data, request_id)
        try:
            return response_type.model_validate(data)
        except ValidationError as exc:
            raise errors.CookbookError(
                f"request {request_id}: the server's result is not a {response_type.__name__}: {exc}"
            ) from exc


async def submit(transport: Transport, path: str, body: bytes | BaseModel, **kwargs: Any,
                 ) -> types.UntypedAPIFuture:
    """POST a long operation; the server answers at once with the request id to poll."""
    data = await transport.post(path, body, **kwargs)
    try:
        return types.UntypedAPIFuture.model_validate(data)
    except ValidationError as exc:
        raise errors.CookbookError(f"{path}: expected a request id from the server, got {data!r}") from exc
