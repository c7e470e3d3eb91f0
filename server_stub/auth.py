"""API-key protection: who may listen where, and the check every request passes through.

A server on loopback is reachable only from this machine, so a key is optional there. Anywhere
else the server trains and writes files on behalf of whoever connects, so it refuses to start
without a key, and with a key every request (health included) must present it, in `X-API-Key` or,
as OpenAI clients send it, in `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from cookbook.client import types
from server_stub.config import API_KEY_ENV, ConfigError
from server_stub.errors import error_response
from server_stub.openai_api import errors as openai_errors

API_KEY_HEADER = "x-api-key"


def is_loopback_host(host: str) -> bool:
    """True for names/addresses that only this machine can reach (localhost, 127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind_allowed(host: str, api_key: str | None) -> None:
    """Refuse to expose the server beyond loopback without a key."""
    if api_key is None and not is_loopback_host(host):
        raise ConfigError(
            f"refusing to listen on non-loopback host {host!r} without an API key: "
            f"pass --api-key KEY or set ${API_KEY_ENV} (clients then send it as X-API-Key)"
        )


class ApiKeyMiddleware:
    """Answers 401 to any HTTP request that does not present the key.

    The key comes in `X-API-Key` (Tinker clients) or as `Authorization: Bearer KEY` (OpenAI
    clients); the refusal is an ErrorBody, or OpenAI's error shape on the OpenAI routes.

    Paths under `signed_prefix` pass without a key: their routes check a signed link instead.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, signed_prefix: str | None = None) -> None:
        self.app = app
        self._key = api_key.encode() if api_key is not None else None
        self._signed_prefix = signed_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signed = self._signed_prefix is not None and scope.get("path", "").startswith(self._signed_prefix)
        if self._key is None or scope["type"] != "http" or signed:
            await self.app(scope, receive, send)
            return
        header, presented = presented_key(scope["headers"])
        if presented is not None and hmac.compare_digest(presented, self._key):
            await self.app(scope, receive, send)
            return
        problem = f"missing {header} header" if presented is None else f"wrong API key in {header} header"
        if scope["path"].startswith(openai_errors.ROUTE_PREFIX):
            if presented is None:
                problem = "missing API key: send Authorization: Bearer KEY (or X-API-Key)"
            response = openai_errors.openai_error(
                401, problem, kind=openai_errors.AUTHENTICATION, code="invalid_api_key"
            )
        else:
            response = error_response(401, problem, field=header, category=types.RequestErrorCategory.User)
        await response(scope, receive, send)


def presented_key(headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes | None]:
    """(the header to name in a refusal, the key presented); X-API-Key wins over a bearer token."""
    found = dict(headers)
    if API_KEY_HEADER.encode() in found:
        return "X-API-Key", found[API_KEY_HEADER.encode()]
    authorization = found.get(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        return "Authorization", token.strip() if scheme.lower() == b"bearer" else None
    return "X-API-Key", None
