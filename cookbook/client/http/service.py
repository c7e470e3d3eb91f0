"""`ServiceClient` over HTTP: the entry point that creates models and samplers on a server.

Construction is free (nothing is sent); the session is created on the first call that needs
one. Sync methods block on the background loop; their `*_async` twins await it from the
caller's loop without blocking that loop.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from cookbook.client import types
from cookbook.client.abstract import SamplingClient, ServiceClient, TrainingClient
from cookbook.client.http.loop import background_loop
from cookbook.client.http.polling import retrieve, submit
from cookbook.client.http.retry import RetryPolicy
from cookbook.client.http.sampling import open_sampling_session
from cookbook.client.http.session import Session
from cookbook.client.http.settings import ClientSettings, resolve_api_key, resolve_base_url
from cookbook.client.http.tokenizers import fetch_tokenizer
from cookbook.client.http.training import HttpTrainingClient
from cookbook.client.http.transport import Transport
from cookbook.tokenizer_utils import Tokenizer

T = TypeVar("T")


class HttpServiceClient(ServiceClient):
    """Talks to a server at `base_url` ($COOKBOOK_BASE_URL / $TINKER_BASE_URL by default).

    `transport` replaces the network (an `httpx.MockTransport` in tests, or custom networking).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60,
                 max_retries: int = 10, user_metadata: dict[str, Any] | None = None, *,
                 retry: RetryPolicy | None = None, max_sample_connections: int = 256,
                 transport: httpx.AsyncBaseTransport | None = None):
        url = resolve_base_url(base_url)
        if url is None:
            raise ValueError("no server address: pass base_url=..., set COOKBOOK_BASE_URL, or call "
                             "cookbook.client.connect() to start the bundled local server")
        policy = retry or RetryPolicy(max_retries=max_retries)
        self.settings = ClientSettings(base_url=url, api_key=resolve_api_key(api_key), timeout_s=timeout,
                                       retry=policy, max_sample_connections=max_sample_connections)
        self._transport = Transport(self.settings, http_transport=transport)
        self._session = Session(self._transport, user_metadata)

    def __repr__(self) -> str:
        return f"HttpServiceClient({self.settings.base_url!r})"

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return background_loop().run(coro)

    async def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        return await background_loop().run_async(coro)

    # -- training clients ---------------------------------------------------------------------

    async def _create_training_client(self, base_model: str, lora_config: types.LoraConfig,
                                      user_metadata: dict[str, str] | None) -> HttpTrainingClient:
        session_id = await self._session.ensure()
        request = types.CreateModelRequest(
            session_id=session_id, model_seq_id=self._session.next_model_seq_id(),
            base_model=base_model, user_metadata=user_metadata, lora_config=lora_config)
        untyped = await submit(self._transport, "/create_model", request)
        created = await retrieve(self._transport, untyped.request_id, types.CreateModelResponse)
        return HttpTrainingClient(self._session, created.model_id, base_model)

    def create_training_client(self, base_model: str, lora_config: types.LoraConfig,
                               user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return self._run(self._create_training_client(base_model, lora_config, user_metadata))

    async def create_training_client_async(self, base_model: str, lora_config: types.LoraConfig,
                                           user_metadata: dict[str, str] | None = None) -> TrainingClient:
        return await self._await(self._create_training_client(base_model, lora_config, user_metadata))

    # -- sampling clients ---------------------------------------------------------------------

    def create_sampling_client(self, model_path: str | None = None, base_model: str | None = None,
                               ) -> SamplingClient:
        return self._run(open_sampling_session(self._session, model_path=model_path, base_model=base_model))

    async def create_sampling_client_async(self, model_path: str | None = None,
                                           base_model: str | None = None) -> SamplingClient:
        return await self._await(open_sampling_session(self._session, model_path=model_path,
                                                       base_model=base_model))

    # -- server information -------------------------------------------------------------------

    async def _capabilities(self) -> types.GetServerCapabilitiesResponse:
        return types.GetServerCapabilitiesResponse.model_validate(
            await self._transport.get("/get_server_capabilities"))

    def get_server_capabilities(self) -> types.GetServerCapabilitiesResponse:
        return self._run(self._capabilities())

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return await self._await(self._capabilities())

    async def _weights_info(self, path: str) -> types.WeightsInfoResponse:
        return types.WeightsInfoResponse.model_validate(
            await self._transport.post("/weights_info", types.WeightsInfoRequest(tinker_path=path)))

    def weights_info(self, path: str) -> types.WeightsInfoResponse:
        return self._run(self._weights_info(path))

    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        return await self._await(self._weights_info(path))

    def get_tokenizer(self, base_model: str) -> Tokenizer:
        return self._run(fetch_tokenizer(self._transport, base_model))

    async def get_tokenizer_async(self, base_model: str) -> Tokenizer:
        return await self._await(fetch_tokenizer(self._transport, base_model))

    # -- lifecycle ----------------------------------------------------------------------------

    async def _aclose(self) -> None:
        await self._session.aclose()
        await self._transport.aclose()

    def close(self) -> None:
        """Stop the heartbeat and close the connections (used again, they reopen)."""
        self._run(self._aclose())

    async def close_async(self) -> None:
        await self._await(self._aclose())
