"""StreamTransport against scripted raw-HTTP peers: bodies, keep-alive, stale connections, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from cookbook.client.http.stream_transport import StreamTransport
from cookbook.client.local_server import LocalServer
from server_stub.config import ServerConfig

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


async def with_server(handler: Handler, client_fn: Callable[[str], Awaitable[object]]) -> object:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await client_fn(f"http://127.0.0.1:{port}")
    finally:
        server.close()


def test_content_length_chunked_and_keep_alive() -> None:
    connections = 0
    seen: list[tuple[str, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                line, _, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append((line, body))
            if line.startswith("GET /chunked"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
                )
            else:
                payload = b'{"echo": "' + body + b'"}'
                writer.write(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
            await writer.drain()

    async def client(url: str) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, transport=StreamTransport()) as c:
            a = await c.post("/echo?x=1", content=b"abc")
            b = await c.get("/chunked")
            d = await c.post("/echo", content=b"")
            return a, b, d

    a, b, d = asyncio.run(with_server(handler, client))  # type: ignore[misc]
    assert a.status_code == 201 and a.json() == {"echo": "abc"}
    assert b.text == "hello world"
    assert d.json() == {"echo": ""}
    assert connections == 1  # all three requests reused one connection
    assert seen[0] == ("POST /echo?x=1 HTTP/1.1", b"abc")


def test_stale_keep_alive_connection_is_retried_on_a_new_one() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # the server drops the connection after one answer, without saying so

    async def client(url: str) -> list[str]:
        async with httpx.AsyncClient(base_url=url, transport=StreamTransport()) as c:
            out = []
            for _ in range(3):
                out.append((await c.post("/x", content=b"1")).text)
                await asyncio.sleep(0.01)
            return out

    assert asyncio.run(with_server(handler, client)) == ["ok"] * 3
    assert connections == 3


def test_connection_close_and_body_until_eof() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy, try later")
        await writer.drain()
        writer.close()

    async def client(url: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, transport=StreamTransport()) as c:
            return await c.get("/x")

    response = asyncio.run(with_server(handler, client))
    assert response.status_code == 503 and response.text == "busy, try later"  # type: ignore[attr-defined]


def test_errors_map_to_httpx_exceptions() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async def call(url: str, timeout: float = 5.0) -> None:
        async with httpx.AsyncClient(base_url=url, transport=StreamTransport(), timeout=timeout) as c:
            await c.get("/x")

    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(with_server(silent, lambda url: call(url, timeout=0.05)))
    with pytest.raises(httpx.RemoteProtocolError, match="status line"):
        asyncio.run(with_server(garbage, call))
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(with_server(hang_up, call))


def test_unreachable_server_is_a_connect_error() -> None:
    from cookbook.client.local_server import free_port

    async def call() -> None:
        async with httpx.AsyncClient(transport=StreamTransport()) as c:
            await c.get(f"http://127.0.0.1:{free_port()}/x")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(call())


def test_at_most_max_connections_are_open() -> None:
    open_now = 0
    peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.01)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_now -= 1

    async def client(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, transport=StreamTransport(max_connections=3)) as c:
            responses = await asyncio.gather(*(c.get("/x") for _ in range(20)))
            return [r.status_code for r in responses]

    assert asyncio.run(with_server(handler, client)) == [200] * 20
    assert peak == 3


@pytest.mark.parametrize(
    ("keep_alive", "connections_expected"),
    [("timeout=30", 1), ("timeout=30, max=100", 1), (None, 2), ("timeout=soon", 2), ("timeout=1", 2)],
)
def test_a_server_keep_alive_promise_sets_how_long_idle_connections_are_reused(
    keep_alive: str | None, connections_expected: int
) -> None:
    """Idle longer than the client's own expiry, a connection is reused only when the server promised
    to keep it (its Keep-Alive timeout, less a margin) for longer than that idle time."""
    connections = 0
    header = b"" if keep_alive is None else b"Keep-Alive: " + keep_alive.encode() + b"\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\n" + header + b"Content-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def client(url: str) -> None:
        transport = StreamTransport(keepalive_expiry_s=0.05)
        async with httpx.AsyncClient(base_url=url, transport=transport) as c:
            await c.get("/x")
            await asyncio.sleep(0.2)  # past the client's own expiry, within the promised 29 s
            await c.get("/x")

    asyncio.run(with_server(handler, client))
    assert connections == connections_expected


def test_the_bundled_server_promises_its_keep_alive(server: LocalServer) -> None:
    """`python -m server_stub` says how long it keeps idle connections, which the transport then uses."""
    response = httpx.get(f"{server.url}/api/v1/healthz")
    assert response.headers["keep-alive"] == f"timeout={int(ServerConfig().keep_alive_seconds)}"
