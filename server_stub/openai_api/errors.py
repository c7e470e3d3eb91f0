"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, which OpenAI clients read."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from server_stub.engine import NotFoundError, UserError

ROUTE_PREFIX = "/v1/"
INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
SERVER_ERROR = "server_error"


def openai_error(
    status_code: int,
    message: str,
    *,
    kind: str = INVALID_REQUEST,
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(status_code=status_code, content=body)


class OpenAIRequestError(UserError):
    """A bad chat request, already phrased in OpenAI's parameter names."""

    def __init__(self, message: str, param: str | None, status_code: int = 400, code: str | None = None):
        super().__init__(message, field=param)
        self.status_code = status_code
        self.code = code


def from_user_error(exc: UserError) -> JSONResponse:
    code = exc.code if isinstance(exc, OpenAIRequestError) else None
    if code is None and isinstance(exc, NotFoundError):
        code = "model_not_found"
    return openai_error(exc.status_code, exc.message, param=exc.field, code=code)
