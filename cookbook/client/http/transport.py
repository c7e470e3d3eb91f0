"""Requests to the server: JSON bodies, connection pools, retries, typed errors, long operations.

One `Transport` per server connection. It keeps separate keep-alive pools for short calls
(submissions, metadata, heartbeats), for training-result polls and for sampling-result polls,
so hundreds of long-polling samples never delay a training submission. Requests go through
`httpx.AsyncClient` over our `StreamTransport` (see there why) unless a transport is given.
Every method runs on the client's background loop (the pools belong to it).

Retries are for failures that say nothing about the request itself: the server was busy (429),
timed out waiting (408), broke (5xx), or could not be reached. Every other 4xx is the caller's
mistake and is raised at once, typed by its status, with the server's message and field.

A long operation is a POST answered at once with a request id (`submit`); its result comes from
`retrieve_future`, which the server holds open until the result is ready or its wait expires
(then it answers `try_again` and we ask again at once). A failed operation comes back as
`{error, category}` and is raised as `RequestFailedError`.

Bodies are encoded with orjson when it is installed (several times faster than the alternatives
on the big int/float lists training sends) and with pydantic's own encoder otherwise; both write
the same JSON, and, as the Tinker wire does, leave out fields that are None.

The binary wire (`cookbook.client.proto`): unless the settings say `wire="json"`, a poll for a
result that has a protobuf form asks for it (`Accept`), and whatever comes back is decoded by its
Content-Type, so an older server's JSON answer still works. Whether forward_backward bodies may
be sent as protobuf is the server's to say (its capabilities), learned once per connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from cookbook.client import errors, proto, types
from cookbook.client.http.settings import API_PREFIX, ClientSettings, RetryPolicy
from cookbook.client.http.stream_transport import StreamTransport

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

if TYPE_CHECKING:
    from cookbook.tokenizer_utils import Tokenizer

R = TypeVar("R", bound=BaseModel)

USER_AGENT = "cookbook-client/0.1"
_MAX_CACHED_URLS = 64
RETRYABLE_STATUS = frozenset({408, 429})
# Results with a protobuf form: asked for as protobuf, JSON still accepted (try_again, errors, old servers).
_ACCEPT_PROTOBUF = {"Accept": f"{proto.PROTOBUF_CONTENT_TYPE}, application/json"}


class Pool(StrEnum):
    """Which connection pool a request uses."""

    DEFAULT = "default"
    TRAIN_POLL = "train_poll"
    SAMPLE_POLL = "sample_poll"


# -- bodies -------------------------------------------------------------------------------------


def encode(model: BaseModel) -> bytes:
    """The request body for a wire model (None fields omitted)."""
    if _orjson is not None:
        return _orjson.dumps(model.model_dump(mode="json", exclude_none=True))
    return model.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes) -> Any:
    """Parse a JSON response body into plain Python values."""
    if _orjson is not None:
        return _orjson.loads(raw)
    return json.loads(raw)


def _decode_success(response: httpx.Response) -> Any:
    """The JSON answer as Python values; a protobuf answer as its bytes."""
    if not response.content:
        return None
    if response.headers.get("content-type", "").startswith(proto.PROTOBUF_CONTENT_TYPE):
        return response.content
    try:
        return decode(response.content)
    except ValueError as exc:
        raise errors.CookbookError(
            f"{response.request.url.path} answered with invalid JSON "
            f"(HTTP {response.status_code}): {response.text[:200]!r}"
        ) from exc


# -- errors -------------------------------------------------------------------------------------


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS or 500 <= status_code < 600


def error_from_response(response: httpx.Response) -> errors.APIStatusError:
    """The typed exception for an error answer, carrying the server's message and field."""
    body: Any = None
    message = ""
    field: str | None = None
    try:
        body = decode(response.content)
    except ValueError:
        message = response.text.strip()
    if isinstance(body, dict):
        try:
            parsed = types.ErrorBody.model_validate(body)
            message, field = parsed.error, parsed.field
        except ValidationError:
            message = _fastapi_detail(body.get("detail")) or str(body)
    if not message:
        message = response.reason_phrase or "error"
    text = f"HTTP {response.status_code} from {response.request.url.path}: {message}"
    if field and field not in message:
        text += f" (field: {field})"
    return errors.status_error(response.status_code, text, body=body, field=field)


def _fastapi_detail(detail: Any) -> str:
    """FastAPI's default error bodies: a string or a list of {loc, msg}."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts)
    return ""


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _failure(data: dict[str, Any], request_id: str) -> errors.RequestFailedError:
    try:
        category = types.RequestErrorCategory(data.get("category"))
    except ValueError:
        category = types.RequestErrorCategory.Unknown
    return errors.RequestFailedError(str(data["error"]), request_id=request_id, category=category)


def _decode_protobuf_result(
    raw: bytes, codec: proto.ResultCodec[Any] | None, request_id: str, response_type: type[R]
) -> R:
    if codec is None:
        raise errors.CookbookError(
            f"request {request_id}: the server answered protobuf for a {response_type.__name__}, "
            "which has no protobuf form here"
        )
    try:
        return codec.decode(raw)
    except proto.ProtobufDecodeError as exc:
        raise errors.CookbookError(
            f"request {request_id}: the server's protobuf result is not a {response_type.__name__}: {exc}"
        ) from exc


# -- the transport ------------------------------------------------------------------------------


class Transport:
    """Requests to one server, with retries, over keep-alive connection pools."""

    def __init__(
        self,
        settings: ClientSettings,
        http_transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self._http_transport = http_transport
        self._rng = rng or random.Random()
        self._clients: dict[Pool, httpx.AsyncClient] = {}
        self._pid = os.getpid()
        # API path -> absolute URL, parsed once: httpx re-parses and re-joins a relative URL with
        # the base on every request.
        self._urls: dict[str, httpx.URL] = {}
        # Base model name -> tokenizer; fetched once per server connection.
        self.tokenizers: dict[str, Tokenizer] = {}
        # Whether forward_backward bodies go as protobuf; None until the server is asked (wire="auto").
        self._protobuf_requests: bool | None = {"json": False, "protobuf": True}.get(settings.wire)
        # The server's capabilities, asked once; None inside: a server without the route (Tinker's, older ours).
        self._capabilities: tuple[types.GetServerCapabilitiesResponse | None] | None = None
        self._capabilities_lock: asyncio.Lock | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.settings.api_key:
            headers["X-API-Key"] = self.settings.api_key
        return headers

    def _client(self, pool: Pool) -> httpx.AsyncClient:
        if self._pid != os.getpid():  # a forked child cannot use its parent's sockets
            self._clients = {}
            self._pid = os.getpid()
        client = self._clients.get(pool)
        if client is None or client.is_closed:
            size = {
                Pool.DEFAULT: self.settings.max_connections,
                Pool.TRAIN_POLL: self.settings.max_connections,
                Pool.SAMPLE_POLL: self.settings.max_sample_connections,
            }[pool]
            read_timeout = self.settings.timeout_s if pool == Pool.DEFAULT else self.settings.poll_timeout_s
            client = httpx.AsyncClient(
                base_url=self.settings.base_url,
                headers=self._headers(),
                # pool=None: a request waits for a free connection rather than failing.
                timeout=httpx.Timeout(read_timeout, pool=None),
                transport=self._http_transport or StreamTransport(max_connections=size),
            )
            self._clients[pool] = client
        return client

    def _attempt_timeout(self, pool: Pool, give_up: float) -> httpx.Timeout:
        """The pool's read timeout, cut to what is left before the request gives up on the server."""
        read = self.settings.timeout_s if pool == Pool.DEFAULT else self.settings.poll_timeout_s
        return httpx.Timeout(max(min(read, give_up - time.monotonic()), 0.001), pool=None)

    def _absolute_url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(self.settings.base_url + url)
            if len(self._urls) < _MAX_CACHED_URLS:  # paths with ids in them are many and rarely reused
                self._urls[url] = parsed
        return parsed

    # -- one request --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: BaseModel | bytes | None = None,
        *,
        pool: Pool = Pool.DEFAULT,
        headers: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Send one request (retrying transient failures) and return the decoded JSON answer."""
        policy = retry or self.settings.retry
        content = encode(body) if isinstance(body, BaseModel) else body
        url = path if path.startswith(API_PREFIX) else API_PREFIX + path
        start = time.monotonic()
        give_up = start + self.settings.unresponsive_after_s
        attempt = 0
        while True:
            retry_after: float | None = None
            unanswered = False
            try:
                response = await self._client(pool).request(
                    method,
                    self._absolute_url(url),
                    content=content,
                    headers=headers,
                    timeout=self._attempt_timeout(pool, give_up),
                )
            except httpx.TimeoutException as exc:
                unanswered = True
                error: errors.CookbookError = errors.APITimeoutError(
                    f"{method} {url}: no answer from {self.settings.base_url} within "
                    f"{time.monotonic() - start:.0f} s (unresponsive_after={self.settings.unresponsive_after_s:g} s): "
                    f"{exc!r}"
                )
            except httpx.TransportError as exc:
                unanswered = True
                error = errors.APIConnectionError(
                    f"{method} {url}: could not reach the server at {self.settings.base_url}: {exc!r}"
                )
            else:
                if response.status_code < 400:
                    return _decode_success(response)
                error = error_from_response(response)
                if not is_retryable_status(response.status_code):
                    raise error
                retry_after = _retry_after_s(response)
            delay = policy.delay(attempt, self._rng, retry_after)
            if unanswered and time.monotonic() + delay >= give_up:
                raise error
            if not policy.should_retry(attempt, time.monotonic() - start, delay):
                raise error
            attempt += 1
            await asyncio.sleep(delay)

    async def post(self, path: str, body: BaseModel | bytes | None = None, **kwargs: Any) -> Any:
        return await self.request("POST", path, body, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def call(self, path: str, body: BaseModel, response_type: type[R]) -> R:
        """A POST answered directly, as a wire type."""
        return response_type.model_validate(await self.post(path, body))

    # -- long operations ----------------------------------------------------------------------

    async def submit(self, path: str, body: BaseModel | bytes, **kwargs: Any) -> str:
        """POST a long operation; the server answers at once with the request id to poll."""
        data = await self.post(path, body, **kwargs)
        try:
            return types.UntypedAPIFuture.model_validate(data).request_id
        except ValidationError as exc:
            raise errors.CookbookError(
                f"{path}: expected a request id from the server, got {data!r}"
            ) from exc

    async def retrieve(self, request_id: str, response_type: type[R], pool: Pool = Pool.TRAIN_POLL) -> R:
        """Poll until the request `request_id` is done; its typed result or its error."""
        body = encode(types.FutureRetrieveRequest(request_id=request_id))
        codec = proto.RESULT_CODECS.get(response_type) if self.settings.wire != "json" else None
        iteration = 0
        while True:
            headers = {"X-Tinker-Request-Iteration": str(iteration), **(_ACCEPT_PROTOBUF if codec else {})}
            try:
                data = await self.post("/retrieve_future", body, pool=pool, headers=headers)
            except errors.NotFoundError as exc:
                raise errors.RequestLostError(
                    f"request {request_id} is lost: the server at {self.settings.base_url} no longer knows it "
                    f"(it restarted since it accepted the request, or dropped the result); submit it again. "
                    f"Server said: {exc}",
                    status_code=exc.status_code,
                    body=exc.body,
                    field=exc.field,
                ) from exc
            iteration += 1
            if isinstance(data, bytes):
                return _decode_protobuf_result(data, codec, request_id, response_type)
            if isinstance(data, dict):
                if data.get("type") == "try_again" or data.get("status") == "complete_metadata":
                    continue
                if "error" in data and "category" in data:
                    raise _failure(data, request_id)
            try:
                return response_type.model_validate(data)
            except ValidationError as exc:
                raise errors.CookbookError(
                    f"request {request_id}: the server's result is not a {response_type.__name__}: {exc}"
                ) from exc

    # -- which wire ---------------------------------------------------------------------------

    @property
    def protobuf_requests(self) -> bool:
        """Whether forward_backward bodies go as protobuf (JSON until `resolve_wire` has asked)."""
        return bool(self._protobuf_requests)

    async def resolve_wire(self) -> bool:
        """For wire="auto", ask the server once whether it reads protobuf bodies; the answer."""
        if self._protobuf_requests is None:
            capabilities = await self.capabilities()
            self._protobuf_requests = capabilities is not None and capabilities.speaks(
                types.WIRE_FORMAT_PROTOBUF
            )
        return self._protobuf_requests

    async def offers(self, extension: str) -> bool:
        """Whether the server's capabilities list `extension` (one of types.EXTENSION_*)."""
        capabilities = await self.capabilities()
        return capabilities is not None and extension in (capabilities.extensions or [])

    async def capabilities(self) -> types.GetServerCapabilitiesResponse | None:
        """The server's capabilities, asked for once per transport; None if it has no such route."""
        if self._capabilities is None:
            if self._capabilities_lock is None:
                self._capabilities_lock = asyncio.Lock()
            async with self._capabilities_lock:
                if self._capabilities is None:
                    try:
                        answer = types.GetServerCapabilitiesResponse.model_validate(
                            await self.get("/get_server_capabilities")
                        )
                    except (errors.APIStatusError, ValidationError):  # a server without our capabilities
                        answer = None
                    self._capabilities = (answer,)
        return self._capabilities[0]

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every pool; a later request opens new ones."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


_shared: dict[ClientSettings, Transport] = {}


def shared_transport(settings: ClientSettings) -> Transport:
    """One transport per settings in this process (used by unpickled clients)."""
    transport = _shared.get(settings)
    if transport is None:
        transport = _shared.setdefault(settings, Transport(settings))
    return transport
