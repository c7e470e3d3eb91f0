"""HttpServiceClient: lazy session + heartbeat, model creation, async twins that do not block."""

from __future__ import annotations

import asyncio
import time

import pytest

from cookbook.client import ServiceClient, connect, types
from cookbook.client.http import HttpServiceClient

from .conftest import FAST_RETRY
from .fake_server import FakeServer


def test_session_is_created_lazily_then_kept_alive(fake: FakeServer) -> None:
    service = HttpServiceClient("http://fake.test", transport=fake.transport(), user_metadata={"who": "test"})
    service._session.heartbeat_interval_s = 0.01
    assert fake.requests == []  # construction sends nothing
    tc = service.create_lora_training_client("fake-base", rank=4, seed=7)
    assert tc.model_id == "model-0"
    assert [r.path for r in fake.requests[:3]] == ["/client/config", "/create_session", "/create_model"]
    session_body = fake.bodies("/create_session")[0]
    assert session_body["user_metadata"] == {"who": "test"} and session_body["type"] == "create_session"
    model_body = fake.bodies("/create_model")[0]
    assert model_body == {
        "session_id": "sess-1",
        "model_seq_id": 0,
        "base_model": "fake-base",
        "lora_config": {"rank": 4, "seed": 7, "train_unembed": True, "train_mlp": True, "train_attn": True},
        "type": "create_model",
    }
    deadline = time.monotonic() + 30
    while len(fake.bodies("/session_heartbeat")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.bodies("/session_heartbeat")[0] == {"session_id": "sess-1", "type": "session_heartbeat"}
    service.close()
    beats = len(fake.bodies("/session_heartbeat"))
    time.sleep(0.05)
    assert len(fake.bodies("/session_heartbeat")) == beats  # close stopped the heartbeat
    second = service.create_lora_training_client("fake-base", rank=4)
    assert second.model_id == "model-1"
    assert len(fake.bodies("/create_session")) == 2  # a closed client opens a new session if reused
    service.close()


def test_one_session_for_concurrent_first_calls(fake: FakeServer, service: HttpServiceClient) -> None:
    async def main() -> list[str]:
        clients = await asyncio.gather(
            *(service.create_lora_training_client_async("fake-base", rank=2) for _ in range(5))
        )
        return sorted(c.model_id for c in clients)

    assert asyncio.run(main()) == [f"model-{i}" for i in range(5)]
    assert len(fake.bodies("/create_session")) == 1


def test_async_methods_do_not_block_the_callers_loop(fake: FakeServer, service: HttpServiceClient) -> None:
    fake.try_again = 20  # create_model takes 20 polls (each sleeps ~1 ms in the fake)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await service.create_lora_training_client_async("fake-base", rank=2)
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 20


def test_training_client_from_state_copies_the_checkpoint_config(
    fake: FakeServer, service: HttpServiceClient
) -> None:
    path = "tinker://model-9/weights/step-3"
    tc = service.create_training_client_from_state_with_optimizer(path)
    assert tc.model_id == "model-0"
    assert fake.bodies("/create_model")[0]["lora_config"]["rank"] == 8
    assert fake.bodies("/load_weights")[0] == {
        "model_id": "model-0",
        "seq_id": 1,
        "path": path,
        "optimizer": True,
        "type": "load_weights",
    }

    async def main() -> str:
        client = await service.create_training_client_from_state_async(path)
        return client.model_id

    assert asyncio.run(main()) == "model-1"
    assert fake.bodies("/load_weights")[1]["optimizer"] is False
    assert fake.bodies("/weights_info") == [{"tinker_path": path}] * 2


def test_server_information(fake: FakeServer, service: HttpServiceClient) -> None:
    caps = service.get_server_capabilities()
    assert caps.supported_models[0].model_name == "fake-base"
    assert asyncio.run(service.get_server_capabilities_async()) == caps
    info = service.weights_info("tinker://r/weights/w")
    assert info == types.WeightsInfoResponse(base_model="fake-base", is_lora=True, lora_rank=8)


def test_all_train_flags_off_is_rejected(service: HttpServiceClient) -> None:
    with pytest.raises(ValueError, match="at least one"):
        service.create_lora_training_client(
            "fake-base", train_mlp=False, train_attn=False, train_unembed=False
        )


def test_connect_uses_the_environment_url_without_starting_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOKBOOK_BASE_URL", "http://remote.test:9")
    monkeypatch.setenv("COOKBOOK_API_KEY", "k")
    client = connect(retry=FAST_RETRY)
    assert isinstance(client, ServiceClient) and isinstance(client, HttpServiceClient)
    assert client.base_url == "http://remote.test:9" and client.settings.api_key == "k"


def test_connect_stays_the_function_after_its_module_is_imported() -> None:
    """Importing the module that defines connect must not shadow the package's export."""
    import importlib

    import cookbook.client as client_package

    importlib.import_module("cookbook.client.connection")
    assert callable(client_package.connect)
    from cookbook.client import connect as exported

    assert callable(exported)
