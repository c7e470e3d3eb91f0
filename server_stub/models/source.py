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
    """A tokenizer as clients receive it: tokenizer.json text plus the special tokens kept outside it."""

    tokenizer_json: str
    bos_token: str | None
    eos_token: str | None
    pad_token: str | None


@dataclass(frozen=True)
class BaseModelSource:
    """How to get one base model: cheap facts now, tokenizer and weights on demand."""

    name: str
    arch: str
    limits: ModelLimits
    config_eos_ids: tuple[int, ...]
    load_tokenizer: Callable[[], TokenizerFiles]
    build_model: Callable[[torch.device, torch.dtype], PreTrainedModel]
    # Where the weights came from (a hub id, or the directory or file loaded), so exports name a base
    # that other tools resolve; None for a built-in model, whose exports carry the base itself.
    reference: str | None = None
