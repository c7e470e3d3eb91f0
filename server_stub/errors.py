"""HTTP error mapping: every error the server answers is a JSON `ErrorBody`.

Engine and validation errors are `UserError`s whose `status_code` picks the HTTP status (400,
404, 409, 429, ...); schema problems become 400 naming the field; unknown routes keep their
404/405; anything unexpected is logged and answered 500 with category "server".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cookbook.client import types
from server_stub.engine import UserError

logger = logging.getLogger("server_stub.errors")


class QueueFullError(UserError):
    """Too much work is already waiting; the client should back off and retry."""

    status_code = 429


def error_response(
    status_code: int,
    message: str,
    *,
    field: str | None = None,
    category: types.RequestErrorCategory = types.RequestErrorCategory.User,
) -> JSONResponse:
    body = types.ErrorBody(error=message, category=category, field=field)
    return JSONResponse(status_code=status_code, content=body.model_dump(mode="json"))


def user_error_response(exc: UserError) -> JSONResponse:
    return error_response(exc.status_code, exc.message, field=exc.field)


def field_path(loc: Sequence[Any]) -> str:
    """A pydantic error location as dotted text: ("data", 2, "weights") -> "data.2.weights"."""
    return ".".join(str(part) for part in loc)


def _validation_error_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if not errors:
        return error_response(400, "invalid request")
    first = errors[0]
    loc = list(first.get("loc", ()))
    if loc and loc[0] in ("body", "path", "query", "header"):
        loc = loc[1:]
    field = field_path(loc) or None
    message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg"))
    return error_response(400, message, field=field)


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure path answer JSON ErrorBody instead of FastAPI's default shapes."""

    async def on_user_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UserError)
        return user_error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_error_response(exc)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(
            500,
            f"internal server error: {type(exc).__name__}: {exc}",
            category=types.RequestErrorCategory.Server,
        )

    app.add_exception_handler(UserError, on_user_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
