"""`ServiceClient` over HTTP: the entry point that creates models and samplers on a server.

Construction is free (nothing is sent). The client's session on the server is created by the
first call that needs one and kept alive by heartbeats; it ties the client's models and samplers
together, and its counters number them (`model_seq_id`, `sampling_session_seq_id`) so a retried
creation is recognised. The server's client config (feature flags) is fetched at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from importlib import metadata
from typing import Any

import httpx

from cookbook.client import errors, types
from cookbook.client.abstract import ServiceClient
from cookbook.client.http.sampling import HttpSamplingClient, open_sampling_session
from cookbook.client.http.settings import (
    ClientSettings,
    RetryPolicy,
    WireSetting,
    resolve_api_key,
    resolve_base_url,
)
from cookbook.client.http.tokenizers import fetch_tokenizer
from cookbook.client.http.training import HttpTrainingClient
from cookbook.client.http.transport import Transport
from cookbook.client.loop import on_client_loop
from cookbook.tokenizer_utils import Tokenizer

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 10.0
# Heartbeat failures are only worth a warning once they have lasted this long.
HEARTBEAT_WARN_AFTER_S = 120.0
_NO_RETRY = RetryPolicy(max_retries=0)


def sdk_version() -> str:
    try:
        return f"cookbook-{metadata.version('rlhf-cookbook')}"
    except metadata.PackageNotFoundError:
        return "cookbook-unknown"


class Session:
    """The session of one service client (all methods run on the background loop)."""

    def __init__(
        self,
        transport: Transport,
        user_metadata: dict[str, Any] | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ):
        self.transport = transport
        self.user_metadata = user_metadata
        self.heartbeat_interval_s = heartbeat_interval_s
        self._session_id: str | None = None
        self._config: types.ClientConfigResponse | None = None
        self._lock: asyncio.Lock | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._model_seq = itertools.count()
        self._sampler_seq = itertools.count()

    async def ensure(self) -> str:
        """The session id, creating the session (and its heartbeat) on first call."""
        if self._session_id is not None:
            return self._session_id
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._session_id is None:
                version = sdk_version()
                config = await self.transport.post(
                    "/client/config", types.ClientConfigRequest(sdk_version=version)
                )
                self._config = types.ClientConfigResponse.model_validate(config or {})
                created = await self.transport.call(
                    "/create_session",
                    types.CreateSessionRequest(user_metadata=self.user_metadata, sdk_version=version),
                    types.CreateSessionResponse,
                )
                for level, text in (
                    (logging.INFO, created.info_message),
                    (logging.WARNING, created.warning_message),
                    (logging.ERROR, created.error_message),
                ):
                    if text:
                        logger.log(level, "server: %s", text)
                self._session_id = created.session_id
                self._heartbeat = asyncio.create_task(self._beat(created.session_id))
        return self._session_id

    @property
    def config(self) -> types.ClientConfigResponse:
        return self._config or types.ClientConfigResponse()

    def next_model_seq_id(self) -> int:
        return next(self._model_seq)

    def next_sampler_seq_id(self) -> int:
        return next(self._sampler_seq)

    async def _beat(self, session_id: str) -> None:
        last_ok = time.monotonic()
        warned = False
        body = types.SessionHeartbeatRequest(session_id=session_id)
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self.transport.post("/session_heartbeat", body, retry=_NO_RETRY)
                last_ok, warned = time.monotonic(), False
            except errors.CookbookError as exc:
                if not warned and time.monotonic() - last_ok > HEARTBEAT_WARN_AFTER_S:
                    logger.warning(
                        "session %s heartbeats failing for %.0f s: %s",
                        session_id,
                        time.monotonic() - last_ok,
                        exc,
                    )
                    warned = True

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        self._session_id = None


class HttpServiceClient(ServiceClient):
    """Talks to a server at `base_url` ($COOKBOOK_BASE_URL / $TINKER_BASE_URL by default).

    `transport` replaces the network (an `httpx.MockTransport` in tests, or custom networking).
    `wire` picks how training calls travel: "auto" (protobuf when the server reads it), "protobuf"
    or "json".
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int = 10,
        user_metadata: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_sample_connections: int = 256,
        transport: httpx.AsyncBaseTransport | None = None,
        wire: WireSetting = "auto",
        unresponsive_after: float = 60,
    ):
        url = resolve_base_url(base_url)
        if url is None:
            raise ValueError(
                "no server address: pass base_url=..., set COOKBOOK_BASE_URL, or call "
                "cookbook.client.connect() to start the bundled local server"
            )
        policy = retry or RetryPolicy(max_retries=max_retries)
        self.settings = ClientSettings(
            base_url=url,
            api_key=resolve_api_key(api_key),
            timeout_s=timeout,
            unresponsive_after_s=unresponsive_after,
            retry=policy,
            max_sample_connections=max_sample_connections,
            wire=wire,
        )
        self._transport = Transport(self.settings, http_transport=transport)
        self._session = Session(self._transport, user_metadata)

    def __repr__(self) -> str:
        return f"HttpServiceClient({self.settings.base_url!r})"

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @on_client_loop
    async def create_training_client_async(
        self,
        base_model: str,
        lora_config: types.LoraConfig,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> HttpTrainingClient:
        session_id = await self._session.ensure()
        request = types.CreateModelRequest(
            session_id=session_id,
            model_seq_id=self._session.next_model_seq_id(),
            base_model=base_model,
            user_metadata=user_metadata,
            lora_config=lora_config,
            reward_head=True if reward_head else None,  # left out unless asked: Tinker's create_model body
        )
        request_id = await self._transport.submit("/create_model", request)
        created = await self._transport.retrieve(request_id, types.CreateModelResponse)
        await self._transport.resolve_wire()  # before the model's first call picks its wire
        return HttpTrainingClient(self._session, created.model_id, base_model)

    @on_client_loop
    async def create_sampling_client_async(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> HttpSamplingClient:
        return await open_sampling_session(self._session, model_path=model_path, base_model=base_model)

    @on_client_loop
    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return types.GetServerCapabilitiesResponse.model_validate(
            await self._transport.get("/get_server_capabilities")
        )

    @on_client_loop
    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        return await self._transport.call(
            "/weights_info", types.WeightsInfoRequest(tinker_path=path), types.WeightsInfoResponse
        )

    @on_client_loop
    async def get_tokenizer_async(self, base_model: str) -> Tokenizer:
        return await fetch_tokenizer(self._transport, base_model)

    @on_client_loop
    async def close_async(self) -> None:
        """Stop the heartbeat and close the connections (used again, they reopen)."""
        await self._session.aclose()
        await self._transport.aclose()
