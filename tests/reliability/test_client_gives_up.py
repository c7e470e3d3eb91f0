"""The client on a frozen or vanished server, and on a future the server no longer knows."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from cookbook.client import errors
from cookbook.client.http.settings import ClientSettings, RetryPolicy
from cookbook.client.http.transport import Transport
from cookbook.client.loop import background_loop


@pytest.fixture
def frozen_server() -> Iterator[str]:
    """Accepts connections and reads, but never answers: a hung process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_the_default_wait_for_an_unresponsive_server_is_at_most_a_minute() -> None:
    assert ClientSettings("http://x.test").unresponsive_after_s <= 60


@pytest.mark.parametrize("path", ["/get_server_capabilities", "/retrieve_future"])
def test_a_frozen_server_gives_a_typed_timeout_after_unresponsive_after(
    frozen_server: str, path: str
) -> None:
    many_retries = RetryPolicy(max_retries=1000, initial_delay_s=0.01, max_delay_s=0.05, max_total_s=3600)
    settings = ClientSettings(frozen_server, unresponsive_after_s=1.0, retry=many_retries)
    transport = Transport(settings)
    started = time.monotonic()
    with pytest.raises(errors.APITimeoutError, match="unresponsive_after=1 s"):
        if path == "/retrieve_future":
            background_loop().run(transport.retrieve("req-0", dict))  # type: ignore[arg-type]
        else:
            background_loop().run(transport.get(path))
    assert time.monotonic() - started >= 1.0  # it kept trying until then, not beyond a retry count


def test_a_vanished_server_gives_a_typed_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nobody listens once closed
    many_retries = RetryPolicy(max_retries=1000, initial_delay_s=0.01, max_delay_s=0.05, max_total_s=3600)
    transport = Transport(ClientSettings(url, unresponsive_after_s=0.5, retry=many_retries))
    with pytest.raises(errors.APIConnectionError):
        background_loop().run(transport.get("/healthz"))


def test_a_future_lost_to_a_restart_says_so() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": "unknown request id 'req-1'", "category": "user", "field": "request_id"}
        return httpx.Response(404, json=body)

    transport = Transport(ClientSettings("http://fake.test"), http_transport=httpx.MockTransport(handler))
    with pytest.raises(errors.RequestLostError, match="restarted since it accepted the request") as lost:
        background_loop().run(transport.retrieve("req-1", dict))  # type: ignore[arg-type]
    assert isinstance(lost.value, errors.NotFoundError)


def test_the_server_says_an_unknown_request_id_may_be_from_before_a_restart() -> None:
    from server_stub.futures_store import UnknownRequestError

    assert "restart" in str(UnknownRequestError("req-1", expired=False))
