"""Base models by name: cheap facts at once, weights loaded lazily once and shared by every client.

"tiny-llama" is always present; `extra_models` adds local Hugging Face directories and GGUF files.
The loaded base is frozen: LoRA clients add adapters to it (`LoraHub`), full-weight clients and
full-weight sampler snapshots get their own copies from `fresh_model`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from server_stub.engine import ModelLimits, NotFoundError
from server_stub.models.builtin_tokenizer import BUILTIN_VOCAB_SIZE, EOS_TOKEN, builtin_tokenizer_json
from server_stub.models.gguf_file import GGUF_SUFFIX, gguf_source
from server_stub.models.hf_dir import hf_dir_source
from server_stub.models.lora_hub import LoraHub
from server_stub.models.source import BaseModelSource, TokenizerFiles
from server_stub.models.tiny_llama import (
    TINY_LLAMA_CONTEXT,
    TINY_LLAMA_EOS_ID,
    TINY_LLAMA_NAME,
    build_tiny_llama,
)
from server_stub.models.token_bytes import TokenBytes

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def tiny_llama_source() -> BaseModelSource:
    return BaseModelSource(
        name=TINY_LLAMA_NAME,
        arch="llama",
        limits=ModelLimits(vocab_size=BUILTIN_VOCAB_SIZE, max_context_length=TINY_LLAMA_CONTEXT),
        config_eos_ids=(TINY_LLAMA_EOS_ID,),
        load_tokenizer=lambda: TokenizerFiles(
            tokenizer_json=builtin_tokenizer_json(), bos_token=None, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN
        ),
        build_model=build_tiny_llama,
    )


class LoadedBase:
    """One base model's shared state: tokenizer facts now, the frozen weights (and LoRA hub) on first use.

    Full-weight training and full-weight snapshots run on their own copies, so a base that only
    serves those never loads its shared copy.
    """

    def __init__(
        self,
        source: BaseModelSource,
        tokenizer: TokenizerFiles,
        eos_ids: tuple[int, ...],
        load: Callable[[], PreTrainedModel],
    ):
        self.source, self.tokenizer, self.eos_ids = source, tokenizer, eos_ids
        self._load = load
        self._hub: LoraHub | None = None
        self._token_bytes: TokenBytes | None = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def hub(self) -> LoraHub:
        """The shared frozen base with its LoRA adapters (`hub.activate(None)` computes the plain base)."""
        if self._hub is None:
            self._hub = LoraHub(self._load(), self.name)
        return self._hub

    @property
    def token_bytes(self) -> TokenBytes:
        if self._token_bytes is None:
            self._token_bytes = TokenBytes(self.tokenizer.tokenizer_json)
        return self._token_bytes


class ModelRegistry:
    def __init__(self, device: torch.device, dtype: torch.dtype, extra_models: dict[str, str] | None = None):
        self.device, self.dtype = device, dtype
        self._sources: dict[str, BaseModelSource] = {TINY_LLAMA_NAME: tiny_llama_source()}
        for name, location in (extra_models or {}).items():
            if name in self._sources:
                raise ValueError(f"model name {name!r} is already taken by a built-in model")
            is_gguf = Path(location).suffix.lower() == GGUF_SUFFIX
            self._sources[name] = (gguf_source if is_gguf else hf_dir_source)(name, location)
        self._tokenizers: dict[str, TokenizerFiles] = {}
        self._tokenizer_lock = threading.Lock()
        self._loaded: dict[str, LoadedBase] = {}

    def names(self) -> list[str]:
        return list(self._sources)

    def source(self, name: str, field: str = "base_model") -> BaseModelSource:
        source = self._sources.get(name)
        if source is None:
            raise NotFoundError(
                f"unknown base model {name!r}; available: {', '.join(self._sources)}", field=field
            )
        return source

    def tokenizer(self, name: str) -> TokenizerFiles:
        """Cheap after the first call; safe from any thread."""
        source = self.source(name, field="model_name")
        with self._tokenizer_lock:
            if name not in self._tokenizers:
                self._tokenizers[name] = source.load_tokenizer()
            return self._tokenizers[name]

    def fresh_model(self, name: str) -> PreTrainedModel:
        """A new, independent copy of the base weights (full-weight training, snapshot sampling)."""
        model = self.source(name).build_model(self.device, self.dtype)
        model.requires_grad_(False)
        return model

    def get(self, name: str) -> LoadedBase:
        """The base's shared state, created on first use (compute thread only)."""
        loaded = self._loaded.get(name)
        if loaded is None:
            from tokenizers import Tokenizer

            source = self.source(name)
            tokenizer = self.tokenizer(name)
            eos = list(source.config_eos_ids)
            if tokenizer.eos_token is not None:
                eos_id = Tokenizer.from_str(tokenizer.tokenizer_json).token_to_id(tokenizer.eos_token)
                if eos_id is not None:
                    eos.append(eos_id)
            loaded = LoadedBase(source, tokenizer, tuple(dict.fromkeys(eos)), lambda: self.fresh_model(name))
            self._loaded[name] = loaded
        return loaded
