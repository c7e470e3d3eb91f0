"""Transport: retries on transient failures only, typed errors with the server's message."""

from __future__ import annotations

import httpx
import pytest

from cookbook.client import errors, types
from cookbook.client.http.settings import ClientSettings
from cookbook.client.http.transport import Transport
from cookbook.client.loop import background_loop

from .conftest import FAST_RETRY
from .fake_server import FakeServer

CAPS = "/get_server_capabilities"


def make_transport(fake: FakeServer, api_key: str | None = None, max_retries: int = 5) -> Transport:
    policy = FAST_RETRY.__class__(max_retries=max_retries, initial_delay_s=0.001, max_delay_s=0.01)
    return Transport(
        ClientSettings("http://fake.test", api_key=api_key, retry=policy), http_transport=fake.transport()
    )


def get(transport: Transport, path: str = CAPS) -> object:
    return background_loop().run(transport.get(path))


def test_retries_503_429_and_connection_errors_then_succeeds(fake: FakeServer) -> None:
    fake.faults[CAPS] = [503, 429, httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 408]
    answer = get(make_transport(fake))
    assert answer == {"supported_models": [{"model_name": "fake-base", "max_context_length": 64}]}
    assert fake.attempts[CAPS] == 6


def test_gives_up_after_max_retries_with_the_last_error(fake: FakeServer) -> None:
    fake.faults[CAPS] = [503] * 10
    with pytest.raises(errors.InternalServerError, match="injected 503") as info:
        get(make_transport(fake, max_retries=2))
    assert info.value.status_code == 503
    assert fake.attempts[CAPS] == 3


def test_connection_failure_after_retries_is_api_connection_error(fake: FakeServer) -> None:
    fake.faults[CAPS] = [httpx.ConnectError("refused")] * 5
    with pytest.raises(errors.APIConnectionError, match="could not reach"):
        get(make_transport(fake, max_retries=1))
    fake.faults[CAPS] = [httpx.ReadTimeout("slow")] * 5
    with pytest.raises(errors.APITimeoutError):
        get(make_transport(fake, max_retries=1))


def test_no_retry_on_400_and_error_carries_message_and_field(fake: FakeServer) -> None:
    def bad_request(request: httpx.Request) -> httpx.Response:
        fake.attempts["bad"] += 1
        body = types.ErrorBody(
            error="data[0].loss_fn_inputs.weights: length 3 != target_tokens length 4",
            field="forward_backward_input.data.0.loss_fn_inputs.weights",
        )
        return httpx.Response(400, json=body.model_dump(mode="json"))

    transport = Transport(
        ClientSettings("http://fake.test", retry=FAST_RETRY), http_transport=httpx.MockTransport(bad_request)
    )
    with pytest.raises(errors.BadRequestError) as info:
        background_loop().run(transport.post("/forward_backward", b"{}"))
    assert fake.attempts["bad"] == 1
    assert info.value.status_code == 400
    assert info.value.field == "forward_backward_input.data.0.loss_fn_inputs.weights"
    assert "length 3 != target_tokens length 4" in str(info.value)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, errors.AuthenticationError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.UnprocessableEntityError),
    ],
)
def test_other_client_errors_are_typed_and_not_retried(
    fake: FakeServer, status: int, cls: type[errors.APIStatusError]
) -> None:
    fake.faults[CAPS] = [status]
    with pytest.raises(cls, match=f"injected {status}"):
        get(make_transport(fake))
    assert fake.attempts[CAPS] == 1


def test_fastapi_style_and_non_json_error_bodies_are_readable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/a"):
            return httpx.Response(400, json={"detail": [{"loc": ["body", "seq_id"], "msg": "not an int"}]})
        return httpx.Response(403, text="<html>forbidden by proxy</html>")

    transport = Transport(ClientSettings("http://fake.test"), http_transport=httpx.MockTransport(handler))
    with pytest.raises(errors.BadRequestError, match=r"body\.seq_id: not an int"):
        background_loop().run(transport.get("/a"))
    with pytest.raises(errors.PermissionDeniedError, match="forbidden by proxy"):
        background_loop().run(transport.get("/b"))


def test_api_key_header_sent_only_when_set(fake: FakeServer) -> None:
    get(make_transport(fake, api_key="secret-key"))
    get(make_transport(fake))
    assert fake.requests[0].headers.get("x-api-key") == "secret-key"
    assert "x-api-key" not in fake.requests[1].headers
    assert fake.requests[0].path == CAPS
