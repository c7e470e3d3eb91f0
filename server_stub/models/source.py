"""What the registry knows about a base model before (and without) loading its weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server_stub.engine import ModelLimits

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class TokenizerFiles:
    """A tokenizer as clients receive it: tokenizer.json text plus what lives outside it.

    The special tokens and the model's own chat template (a Jinja template, None when the model
    has none) come from tokenizer_config.json in a Hugging Face directory, or from a GGUF's metadata.
    """

    tokenizer_json: str
    bos_token: str | None
    eos_token: str | None
    pad_token: str | None
    chat_template: str | None = None  # Jinja text, as transformers' apply_chat_template reads it


@dataclass(frozen=True)
class BaseModelSource:
    """How to get one base model: cheap facts now, tokenizer and weights on demand."""

    name: str
    arch: str
    limits: ModelLimits
    config_eos_ids: tuple[int, ...]
    load_tokenizer: Callable[[], TokenizerFiles]
    build_model: Callable[[torch.device, torch.dtype], PreTrainedModel]
    # A name other tools load the base by (a hub id or a Hugging Face directory), which exports write
    # as the adapter's base; None when there is none (a built-in model, a GGUF file): exports carry it.
    reference: str | None = None
