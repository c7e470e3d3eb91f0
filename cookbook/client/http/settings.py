"""Where the server is and how to talk to it: resolved once, picklable, hashable.

The base URL and API key come from the arguments, else the environment (our `COOKBOOK_*`
names first, then Tinker's `TINKER_*` names so existing scripts keep working).

Retries are for failures that say nothing about the request itself (see `transport`). Waits grow
exponentially with full jitter, so many clients that failed together do not come back together,
and both the number of retries and the total time spent are bounded.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

API_PREFIX = "/api/v1"
# How forward/forward_backward and their results travel: "protobuf" (the 0.38 SDK's binary wire),
# "json" (the 0.24 wire), or "auto": protobuf when the server's capabilities list it, else JSON.
WireSetting: TypeAlias = Literal["auto", "json", "protobuf"]
WIRE_SETTINGS: tuple[str, ...] = get_args(WireSetting)
BASE_URL_ENV_VARS = ("COOKBOOK_BASE_URL", "TINKER_BASE_URL")
API_KEY_ENV_VARS = ("COOKBOOK_API_KEY", "TINKER_API_KEY")


def _first_set(value: str | None, env_vars: tuple[str, ...]) -> str | None:
    if value:
        return value
    for name in env_vars:
        if os.environ.get(name):
            return os.environ[name]
    return None


def requested_base_url(base_url: str | None = None) -> str | None:
    """The URL asked for, as written (an `inprocess://` one too): the argument, else the first
    base-URL variable set, else None."""
    return _first_set(base_url, BASE_URL_ENV_VARS)


def resolve_base_url(base_url: str | None = None) -> str | None:
    """The argument, else $COOKBOOK_BASE_URL, else $TINKER_BASE_URL, else None."""
    url = requested_base_url(base_url)
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
class RetryPolicy:
    """Bounds on retrying one HTTP request."""

    max_retries: int = 10
    initial_delay_s: float = 0.25
    max_delay_s: float = 10.0
    max_total_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.max_total_s < 0:
            raise ValueError("retry delays and the total time cap must be >= 0")

    def delay(
        self, attempt: int, rng: random.Random | None = None, retry_after_s: float | None = None
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        ceiling = min(self.max_delay_s, self.initial_delay_s * (2**attempt))
        wait = (rng or random).uniform(0.0, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return wait

    def should_retry(self, attempt: int, elapsed_s: float, next_delay_s: float) -> bool:
        """Whether retry number `attempt` (0-based) is still within both bounds."""
        return attempt < self.max_retries and elapsed_s + next_delay_s <= self.max_total_s


@dataclass(frozen=True)
class ClientSettings:
    """Everything needed to reconnect to a server, e.g. in another process."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    # A frozen or vanished server: every request gives up (typed error) this long after it was first sent,
    # however many retries of timeouts and refused connections that leaves.
    unresponsive_after_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Connections per pool. Each in-flight sample holds one long-poll connection.
    max_sample_connections: int = 256
    max_connections: int = 64
    wire: WireSetting = "auto"

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout_s}")
        if self.unresponsive_after_s <= 0:
            raise ValueError(f"unresponsive_after must be > 0 seconds, got {self.unresponsive_after_s}")
        if self.max_sample_connections < 1 or self.max_connections < 1:
            raise ValueError("connection pool sizes must be >= 1")
        if self.wire not in WIRE_SETTINGS:
            raise ValueError(f"wire must be one of {WIRE_SETTINGS}, got {self.wire!r}")

    @property
    def poll_timeout_s(self) -> float:
        """retrieve_future is held open by the server (~25 s) before it answers try_again."""
        return max(self.timeout_s, 45.0)
