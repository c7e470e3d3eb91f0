"""One SmolLM2-135M-Instruct for the whole session: the GGUF, a server serving it, transformers' own copy,
and one short LoRA run on the server that the export and OpenAI tests share.

The server serves the GGUF as "smollm2", a name that says nothing about its chat format, in fp32
on the CPU; the reference is transformers loading the same file in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.smollm2 import smollm2_gguf
from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from cookbook.renderers import get_renderer
from cookbook.renderers.types import Message
from cookbook.supervised.data import conversation_to_datum
from cookbook.tokenizer_utils import Tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SERVED_NAME = "smollm2"
TRAINED_LORA_RANK = 8
TRAINING_STEPS = 3
# Large enough that three Adam steps move the output measurably from the base's.
TRAINING_ADAM = types.AdamParams(learning_rate=1e-3)
TRAINING_CHATS = (
    [Message(role="user", content="Name a primary color."), Message(role="assistant", content="Red.")],
    [Message(role="user", content="What is 2 + 2?"), Message(role="assistant", content="4.")],
)


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


@pytest.fixture(scope="session")
def reference_tokenizer(gguf_path: Path) -> PreTrainedTokenizerBase:
    """transformers' own tokenizer of the GGUF (with its chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


@pytest.fixture(scope="session")
def trained_lora_sampler_path(smollm2_service: HttpServiceClient, smollm2_tokenizer: Tokenizer) -> str:
    """A rank-8 LoRA (every layer, the tied output layer included) after a few SFT steps: its sampler path."""
    renderer = get_renderer("chatml", smollm2_tokenizer)
    batch = [conversation_to_datum(chat, renderer, max_length=None) for chat in TRAINING_CHATS]
    trainer = smollm2_service.create_lora_training_client(SERVED_NAME, rank=TRAINED_LORA_RANK)
    for _ in range(TRAINING_STEPS):
        trainer.forward_backward(batch, "cross_entropy")
        trainer.optim_step(TRAINING_ADAM)
    return trainer.save_weights_for_sampler("smollm2-lora").result().path
