"""`connect()`: a service client for a server URL, for this process's own engine, or for the bundled server.

With a base URL (argument, $COOKBOOK_BASE_URL or $TINKER_BASE_URL) it connects there; an
`inprocess://` URL runs the server's engine and scheduler inside this process instead (no HTTP; see
`cookbook.client.in_process`, imported only then, since it brings the server and torch with it); with
none it starts (or reuses) this process's bundled server, so recipes run with no setup.
"""

from __future__ import annotations

from typing import Any

from cookbook.client.abstract import ServiceClient
from cookbook.client.http.service import HttpServiceClient
from cookbook.client.http.settings import requested_base_url, resolve_base_url
from cookbook.client.local_server import shared_local_server

IN_PROCESS_PREFIX = "inprocess://"


def connect(base_url: str | None = None, api_key: str | None = None, **client_kwargs: Any) -> ServiceClient:
    """A service client; `client_kwargs` go to `HttpServiceClient` (timeout, max_retries, ...).

    In process, the API key and the HTTP settings have nothing to apply to and are ignored."""
    if is_in_process(base_url):
        from cookbook.client.in_process import connect_in_process

        return connect_in_process(requested_base_url(base_url) or IN_PROCESS_PREFIX)
    url = resolve_base_url(base_url)
    if url is None:
        url = shared_local_server().url
    return HttpServiceClient(url, api_key, **client_kwargs)


def is_in_process(base_url: str | None = None) -> bool:
    """Whether `connect(base_url)` runs the engine in this process (an `inprocess://` URL)."""
    url = requested_base_url(base_url)
    return url is not None and url.strip().lower().startswith(IN_PROCESS_PREFIX)
