"""Typed exceptions raised by the client; each carries the server's own message."""

from __future__ import annotations

from typing import Any

from cookbook.client.types import RequestErrorCategory


class CookbookError(Exception):
    """Base of every error the client raises."""


class InvalidInputError(CookbookError, ValueError):
    """The client rejected an argument before sending it (e.g. NaN, which JSON cannot carry)."""


class APIConnectionError(CookbookError):
    """The server could not be reached (after retries)."""


class APITimeoutError(APIConnectionError):
    """The server did not answer in time (after retries)."""


class APIStatusError(CookbookError):
    """The server answered with an HTTP error status; `body` is its JSON error body."""

    status_code: int = 0

    def __init__(self, message: str, *, status_code: int, body: Any = None, field: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.field = field


class BadRequestError(APIStatusError):
    """400: the request was malformed or its values are invalid."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: unknown model, sampler, checkpoint or route."""


class RequestLostError(NotFoundError):
    """404 for a request id the client holds: the server restarted (or dropped the result) since it was
    accepted, and the result is gone; submit the work again."""


class ConflictError(APIStatusError):
    """409: e.g. a checkpoint of that name exists already."""


class UnprocessableEntityError(APIStatusError):
    """422: the body did not match the wire schema."""


class RateLimitError(APIStatusError):
    """429."""


class InternalServerError(APIStatusError):
    """5xx."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(
    status_code: int, message: str, body: Any = None, field: str | None = None
) -> APIStatusError:
    """The typed exception for an HTTP status code."""
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = InternalServerError if status_code >= 500 else APIStatusError
    return cls(message, status_code=status_code, body=body, field=field)


class RequestFailedError(CookbookError):
    """An accepted request whose operation failed; `category` says whose fault it was."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        category: RequestErrorCategory = RequestErrorCategory.Unknown,
    ):
        super().__init__(message)
        self.request_id = request_id
        self.category = category

    @property
    def is_user_error(self) -> bool:
        return self.category == RequestErrorCategory.User
