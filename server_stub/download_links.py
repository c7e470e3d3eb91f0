"""Signed, expiring download URLs: Tinker hands out a link to a checkpoint's archive instead of the bytes.

A link is the download path plus `expires` and an HMAC `signature` under a secret of this process,
so whoever holds the link may fetch that one path until it expires, without the API key (as with
Tinker's signed storage URLs); the links die with the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from server_stub.engine import UserError

DEFAULT_LINK_TTL_SECONDS = 15 * 60


class ForbiddenError(UserError):
    """A download link that was not signed here, or has expired."""

    status_code = 403


@dataclass(frozen=True)
class DownloadSigner:
    ttl_seconds: int = DEFAULT_LINK_TTL_SECONDS
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def _signature(self, path: str, expires: int) -> str:
        return hmac.new(self.secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str) -> tuple[int, str]:
        """(expires as a Unix time, signature) for a link to `path`."""
        expires = int(time.time()) + self.ttl_seconds
        return expires, self._signature(path, expires)

    def verify(self, path: str, expires: int, signature: str) -> None:
        if not hmac.compare_digest(self._signature(path, expires), signature):
            raise ForbiddenError("download link signature does not match", field="signature")
        if time.time() >= expires:
            raise ForbiddenError("download link has expired: ask for a new one", field="expires")
