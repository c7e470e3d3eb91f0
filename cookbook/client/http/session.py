"""A client session on the server: created on first use, kept alive by heartbeats.

The session id ties a service client's models and samplers together on the server; its
counters number them (`model_seq_id`, `sampling_session_seq_id`) so a retried creation is
recognised. The server's client config (feature flags) is fetched at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from importlib import metadata
from typing import Any

from cookbook.client import errors, types
from cookbook.client.http.retry import RetryPolicy
from cookbook.client.http.transport import Transport

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

    def __init__(self, transport: Transport, user_metadata: dict[str, Any] | None = None,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S):
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
                    "/client/config", types.ClientConfigRequest(sdk_version=version))
                self._config = types.ClientConfigResponse.model_validate(config or {})
                answer = await self.transport.post("/create_session", types.CreateSessionRequest(
                    user_metadata=self.user_metadata, sdk_version=version))
                created = types.CreateSessionResponse.model_validate(answer)
                for level, text in ((logging.INFO, created.info_message),
                                    (logging.WARNING, created.warning_message),
                                    (logging.ERROR, created.error_message)):
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
                    logger.warning("session %s heartbeats failing for %.0f s: %s",
                                   session_id, time.monotonic() - last_ok, exc)
                    warned = True

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        self._session_id = None
