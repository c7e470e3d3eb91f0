"""`stream: true` sends each token while the sampler is still sampling, seen by the official openai client.

The real engine serves the app in this process (uvicorn on a loopback port) behind a wrapper that
pauses sampling at one token of the answer until the client has read a content chunk: if chunks
went out only after the generation, the client would read none while the sampler waits, and the
pause would end unreleased. No clock is read: the order of events is what is checked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import openai
import pytest
import uvicorn

from cookbook.client import types
from cookbook.client.local_server import free_port
from server_stub.app import create_app
from server_stub.config import ServerConfig
from server_stub.engine import SampleJob
from server_stub.torch_engine import TorchEngine

BASE_MODEL = "tiny-llama"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PAUSE_AT_TOKEN = 12
MAX_TOKENS = 40


class PausingEngine:
    """The real engine; a streamed request's sampling waits at token PAUSE_AT_TOKEN for `client_read`."""

    def __init__(self, engine: TorchEngine) -> None:
        self._engine = engine
        self.client_read = threading.Event()
        self.paused = threading.Event()
        self.released_by_client: bool | None = None

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        return self._engine.sample([self._pausing(job) for job in jobs])

    def _pausing(self, job: SampleJob) -> SampleJob:
        sink = job.on_token
        if sink is None:
            return job
        count = 0

        def on_token(index: int, token: int) -> None:
            nonlocal count
            count += 1
            if count == PAUSE_AT_TOKEN:
                self.paused.set()
                self.released_by_client = self.client_read.wait(60)
            sink(index, token)

        return replace(job, on_token=on_token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PausingEngine]]:
    engine = PausingEngine(TorchEngine(tmp_path_factory.mktemp("storage"), device="cpu"))
    port = free_port()
    config = ServerConfig(sample_batch_window_seconds=0.0)
    server = uvicorn.Server(uvicorn.Config(create_app(engine, config), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}", engine
    server.should_exit = True
    thread.join()


def test_chunks_reach_the_client_while_the_sampler_is_still_sampling(
    served: tuple[str, PausingEngine],
) -> None:
    url, engine = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    settings = {
        "model": BASE_MODEL,
        "messages": QUESTION,
        "temperature": 0.7,
        "seed": 3,
        "max_tokens": MAX_TOKENS,
    }
    whole = client.chat.completions.create(**settings).choices[0]
    assert whole.finish_reason == "length"  # the answer runs past the pause

    contents: list[str] = []
    for chunk in client.chat.completions.create(**settings, stream=True):
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is not None and delta.content:
            engine.client_read.set()
            contents.append(delta.content)
    client.close()

    assert engine.paused.is_set()
    assert engine.released_by_client is True  # the sampler was still at token PAUSE_AT_TOKEN of MAX_TOKENS
    assert len(contents) > 1
    assert "".join(contents) == whole.message.content
