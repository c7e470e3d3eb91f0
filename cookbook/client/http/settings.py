"""Where the server is and how to talk to it: resolved once, picklable, hashable.

The base URL and API key come from the arguments, else the environment (our `COOKBOOK_*`
names first, then Tinker's `TINKER_*` names so existing scripts keep working).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cookbook.client.http.retry import RetryPolicy

API_PREFIX = "/api/v1"
BASE_URL_ENV_VARS = ("COOKBOOK_BASE_URL", "TINKER_BASE_URL")
API_KEY_ENV_VARS = ("COOKBOOK_API_KEY", "TINKER_API_KEY")


def _first_set(value: str | None, env_vars: tuple[str, ...]) -> str | None:
    if value:
        return value
    for name in env_vars:
        if os.environ.get(name):
            return os.environ[name]
    return None


def resolve_base_url(base_url: str | None = None) -> str | None:
    """The argument, else $COOKBOOK_BASE_URL, else $TINKER_BASE_URL, else None."""
    url = _first_set(base_url, BASE_URL_ENV_VARS)
    return None if url is None else normalize_base_url(url)


def resolve_api_key(api_key: str | None = None) -> str | None:
    """The argument, else $COOKBOOK_API_KEY, else $TINKER_API_KEY, else None."""
    return _first_set(api_key, API_KEY_ENV_VARS)


def normalize_base_url(url: str) -> str:
    """`http://host:port` without a trailing slash or API prefix (both are accepted)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to reconnect to a server, e.g. in another process."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Connections per pool. Each in-flight sample holds one long-poll connection.
    max_sample_connections: int = 256
    max_connections: int = 64

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout_s}")
        if self.max_sample_connections < 1 or self.max_connections < 1:
            raise ValueError("connection pool sizes must be >= 1")

    @property
    def poll_timeout_s(self) -> float:
        """retrieve_future is held open by the server (~25 s) before it answers try_again."""
        return max(self.timeout_s, 45.0)
