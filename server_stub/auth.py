"""API-key protection: who may listen where, and the check every request passes through.

A server on loopback is reachable only from this machine, so a key is optional there. Anywhere
else the server trains and writes files on behalf of whoever connects, so it refuses to start
without a key, and with a key every request (health included) must present it, in `X-API-Key` or,
as OpenAI clients send it, in `Authorization: Bearer`.

Several tenants can share one server: a keys file gives each tenant its own key, and the key a
request presents names the tenant that owns what it creates (`owners.py`). A single `--api-key`
is the one tenant `DEFAULT_OWNER`, as is every request to a server with no key.
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from cookbook.client import types
from server_stub.config import API_KEY_ENV, ConfigError
from server_stub.errors import error_response
from server_stub.openai_api import errors as openai_errors
from server_stub.owners import DEFAULT_OWNER, current_owner

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


def read_keys_file(path: Path) -> dict[str, str]:
    """Tenant by key from a file of `TENANT KEY` lines (blank lines and `#` comments skipped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the keys file {path}: {exc}") from None
    tenants: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2:
            raise ConfigError(f"{path}:{number}: expected 'TENANT KEY', got {len(parts)} words")
        tenant, key = parts
        if key in tenants:
            raise ConfigError(f"{path}:{number}: a key may name only one tenant")
        tenants[key] = tenant
    return tenants


def tenants_by_key(api_key: str | None, keys_file: Path | None) -> dict[str, str]:
    """Every key this server accepts and the tenant it names (empty: no key is asked for)."""
    tenants = read_keys_file(keys_file) if keys_file is not None else {}
    if api_key is not None:
        if tenants.get(api_key, DEFAULT_OWNER) != DEFAULT_OWNER:
            raise ConfigError("--api-key is also a key of another tenant in the keys file")
        tenants[api_key] = DEFAULT_OWNER
    return tenants


def check_bind_allowed(host: str, api_key: str | None, keys_file: Path | None = None) -> None:
    """Refuse to expose the server beyond loopback without a key."""
    if api_key is None and keys_file is None and not is_loopback_host(host):
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

    def __init__(self, app: ASGIApp, tenants: dict[str, str], signed_prefix: str | None = None) -> None:
        self.app = app
        self._tenants = [(key.encode(), tenant) for key, tenant in tenants.items()]
        self._signed_prefix = signed_prefix

    def _tenant(self, presented: bytes) -> str | None:
        found = None
        for key, tenant in self._tenants:  # every key compared, so timing does not tell which matched
            if hmac.compare_digest(presented, key):
                found = tenant
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signed = self._signed_prefix is not None and scope.get("path", "").startswith(self._signed_prefix)
        if not self._tenants or scope["type"] != "http" or signed:
            current_owner.set(DEFAULT_OWNER)
            await self.app(scope, receive, send)
            return
        header, presented = presented_key(scope["headers"])
        tenant = self._tenant(presented) if presented is not None else None
        if tenant is not None:
            current_owner.set(tenant)
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
