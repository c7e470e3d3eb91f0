"""A lean HTTP/1.1 keep-alive transport for httpx, on plain asyncio streams.

Why: httpx's default transport (httpcore) rescans every pooled connection and every queued
request each time a request finishes, and checks each idle socket's readability while doing
so. With the many concurrent long-polls that sampling creates, that costs milliseconds of CPU
per request, about ten times this transport's (bench/README.md); the client shares the machine
with the server, so this matters for throughput.

It speaks just what our JSON wire needs: one request per connection at a time, Content-Length
or chunked bodies, keep-alive, http and https, no proxies (pass httpx's own
`AsyncHTTPTransport` as the client's `transport` to get those). A stale keep-alive connection
that fails before any byte of the answer arrives is retried once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from dataclasses import dataclass, field

import httpx

_NO_BODY_STATUS = frozenset({204, 304})
KEEPALIVE_MARGIN_S = 1.0
"""A connection is reused only until this long before the server said it closes idle ones."""
_MAX_HEADER_BYTES = 1 << 16


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    expiry_s: float  # reused only while idle for less than this
    idle_since: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.writer.close()


class _StaleConnection(Exception):
    """A reused connection was closed by the server before it answered."""


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None]:
    timeout = request.extensions.get("timeout", {})
    return timeout.get("connect"), timeout.get("read")


class StreamTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 over asyncio streams, at most `max_connections` open at once."""

    def __init__(
        self,
        max_connections: int = 64,
        keepalive_expiry_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        # uvicorn drops idle connections after 5 s by default: without a server's own Keep-Alive
        # header, do not reuse ones close to that age.
        self._keepalive_expiry_s = keepalive_expiry_s
        self._ssl_context = ssl_context
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._slots:
            body = await request.aread()
            key = (
                request.url.scheme,
                request.url.host,
                request.url.port or _default_port(request.url.scheme),
            )
            reused = self._take_idle(key)
            if reused is not None:
                try:
                    return await self._exchange(reused, key, request, body, reused=True)
                except _StaleConnection:
                    pass
            connection = await self._connect(key, request)
            try:
                return await self._exchange(connection, key, request, body, reused=False)
            except _StaleConnection as exc:
                raise httpx.RemoteProtocolError(
                    "server closed the connection without answering", request=request
                ) from exc

    # -- connections --------------------------------------------------------------------------

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < connection.expiry_s and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[str, str, int], request: httpx.Request) -> _Connection:
        scheme, host, port = key
        connect_timeout, _ = _timeouts(request)
        context = None
        if scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                    limit=_MAX_HEADER_BYTES,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from exc
        return _Connection(reader, writer, self._keepalive_expiry_s)

    def _release(self, key: tuple[str, str, int], connection: _Connection) -> None:
        if self._closed:  # a request that finished after aclose()
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(connection)

    # -- one request/response -----------------------------------------------------------------

    async def _exchange(
        self,
        connection: _Connection,
        key: tuple[str, str, int],
        request: httpx.Request,
        body: bytes,
        *,
        reused: bool,
    ) -> httpx.Response:
        _, read_timeout = _timeouts(request)
        keep = False
        got_bytes = False
        try:
            connection.writer.write(_request_head(request, body) + body)
            async with asyncio.timeout(read_timeout):
                await connection.writer.drain()
                try:
                    head = await connection.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if reused and not exc.partial:
                        raise _StaleConnection from exc
                    raise
                got_bytes = True
                status, headers = _parse_head(head, request)
                content, reusable = await _read_body(connection.reader, status, headers, request)
            keep = reusable and not _wants_close(headers)
            promised = _promised_idle_s(headers)
            if promised is not None:
                # RL evaluations poll hundreds of samples at once every few seconds: a server that
                # keeps those connections longer than the default saves reconnecting them each time.
                connection.expiry_s = max(0.0, promised - KEEPALIVE_MARGIN_S)
            return httpx.Response(status, headers=headers, content=content, request=request)
        except ConnectionError as exc:
            if reused and not got_bytes:
                raise _StaleConnection from exc
            raise httpx.ReadError(f"connection lost: {exc}", request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("the server did not answer in time", request=request) from exc
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise httpx.RemoteProtocolError(
                f"malformed or truncated answer: {exc!r}", request=request
            ) from exc
        finally:
            if keep:
                self._release(key, connection)
            else:
                connection.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    lines = [f"{request.method} {request.url.raw_path.decode('ascii')} HTTP/1.1"]
    has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"transfer-encoding":
            continue  # the body is already in memory: always send Content-Length
        if lower == b"content-length":
            has_length = True
            value = str(len(body)).encode()
        lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
    if not has_length and (body or request.method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(head: bytes, request: httpx.Request) -> tuple[int, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise httpx.RemoteProtocolError(f"not an HTTP status line: {lines[0]!r}", request=request)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _promised_idle_s(headers: list[tuple[str, str]]) -> float | None:
    """How long the server keeps this connection open while idle, if it says (`Keep-Alive: timeout=N`)."""
    for param in (_header(headers, "keep-alive") or "").split(","):
        name, _, value = param.partition("=")
        if name.strip().lower() == "timeout":
            try:
                seconds = float(value)
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) else None
    return None


def _wants_close(headers: list[tuple[str, str]]) -> bool:
    return (_header(headers, "connection") or "").lower() == "close"


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: list[tuple[str, str]], request: httpx.Request
) -> tuple[bytes, bool]:
    """The body, and whether the connection can carry another request afterwards."""
    if request.method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
        return b"", True
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        return await _read_chunked(reader), True
    length = _header(headers, "content-length")
    if length is not None:
        return await reader.readexactly(int(length)), True
    return await reader.read(), False  # delimited by the server closing the connection


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
