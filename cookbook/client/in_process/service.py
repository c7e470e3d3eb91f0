"""`ServiceClient` in process: creates models and samplers on this process's engine (see `server`)."""

from __future__ import annotations

import asyncio
import uuid

from cookbook.client import types
from cookbook.client.abstract import ServiceClient
from cookbook.client.in_process.sampling import InProcessSamplingClient, open_sampler
from cookbook.client.in_process.server import InProcessServer, client_errors
from cookbook.client.in_process.training import InProcessTrainingClient
from cookbook.tokenizer_utils import Tokenizer
from server_stub import request_limits, validation


class InProcessServiceClient(ServiceClient):
    """The entry point over an `InProcessServer`; closing it leaves the server to the other clients."""

    def __init__(self, server: InProcessServer):
        self._server = server
        self._session = f"in-process-{uuid.uuid4().hex}"  # counts this client's samplers, as a session does
        self._model_seq = 0

    def __repr__(self) -> str:
        return f"InProcessServiceClient({self._session!r})"

    @property
    def server(self) -> InProcessServer:
        return self._server

    async def create_training_client_async(
        self,
        base_model: str,
        lora_config: types.LoraConfig,
        user_metadata: dict[str, str] | None = None,
        reward_head: bool = False,
    ) -> InProcessTrainingClient:
        server, engine = self._server, self._server.engine
        request = types.CreateModelRequest(
            session_id=self._session,
            model_seq_id=self._model_seq,
            base_model=base_model,
            user_metadata=user_metadata,
            lora_config=lora_config,
            reward_head=True if reward_head else None,
        )
        self._model_seq += 1
        model_id = f"run-{uuid.uuid4().hex}"
        with client_errors():
            request_limits.check_metadata(server.config, "user_metadata", request.user_metadata)
            engine.model_limits(base_model)  # 404 for a base model this server does not serve
            validation.check_create_model(request)
            created = server.open_model(
                model_id,
                base_model,
                reward_head,
                lambda: engine.create_model(
                    model_id, base_model, request.lora_config, request.user_metadata, reward_head=reward_head
                ),
            )
        await asyncio.wrap_future(created)
        return InProcessTrainingClient(server, self._session, model_id, base_model)

    async def create_sampling_client_async(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> InProcessSamplingClient:
        return await open_sampler(self._server, self._session, model_path=model_path, base_model=base_model)

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        engine = self._server.engine
        reward_head = [types.EXTENSION_REWARD_HEAD] if getattr(engine, "supports_reward_head", True) else []
        return types.GetServerCapabilitiesResponse(
            supported_models=engine.supported_models(),
            extensions=[*reward_head, types.EXTENSION_COMPUTE_TIME],
        )

    async def weights_info_async(self, path: str) -> types.WeightsInfoResponse:
        with client_errors():
            validation.parse_tinker_path(path, "tinker_path")
            return self._server.engine.weights_info(path)

    async def get_tokenizer_async(self, base_model: str) -> Tokenizer:
        return await self._server.tokenizer(base_model)

    async def close_async(self) -> None:
        """Nothing to release: the server stays up for this process's other clients."""
