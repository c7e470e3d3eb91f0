"""One SmolLM2-135M-Instruct for the whole session: the GGUF, a server serving it, transformers' own copy.

The server serves the GGUF as "smollm2", a name that says nothing about its chat format, in fp32
on the CPU; the reference is transformers loading the same file in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.smollm2 import smollm2_gguf
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.tokenizer_utils import Tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SERVED_NAME = "smollm2"


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return smollm2_gguf()


@pytest.fixture(scope="session")
def smollm2_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    model_flags = ["--model", f"{SERVED_NAME}={gguf_path}", "--device", "cpu", "--dtype", "float32"]
    with LocalServer(tmp_path_factory.mktemp("smollm2-storage"), extra_args=model_flags) as running:
        yield running


@pytest.fixture(scope="session")
def smollm2_service(smollm2_server: LocalServer) -> Iterator[HttpServiceClient]:
    client = HttpServiceClient(smollm2_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_service: HttpServiceClient) -> Tokenizer:
    return smollm2_service.get_tokenizer(SERVED_NAME)


@pytest.fixture(scope="session")
def reference_model(gguf_path: Path) -> PreTrainedModel:
    """transformers' own fp32 load of the GGUF, as a user would write it."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    return model.eval()
