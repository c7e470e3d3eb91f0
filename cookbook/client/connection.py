"""`connect()`: a service client for a server URL, or for the bundled local server.

With a base URL (argument, $COOKBOOK_BASE_URL or $TINKER_BASE_URL) it connects there; with
none it starts (or reuses) this process's bundled server, so recipes run with no setup.
"""

from __future__ import annotations

from typing import Any

from cookbook.client.abstract import ServiceClient
from cookbook.client.http.service import HttpServiceClient
from cookbook.client.http.settings import resolve_base_url
from cookbook.client.local_server import shared_local_server


def connect(base_url: str | None = None, api_key: str | None = None, **client_kwargs: Any) -> ServiceClient:
    """A service client; `client_kwargs` go to `HttpServiceClient` (timeout, max_retries, ...)."""
    url = resolve_base_url(base_url)
    if url is None:
        url = shared_local_server().url
    return HttpServiceClient(url, api_key, **client_kwargs)
