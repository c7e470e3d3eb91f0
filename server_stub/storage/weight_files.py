"""Weights on disk in formats other tools load.

LoRA: `adapter_model.safetensors` + `adapter_config.json` (PEFT's adapter format, loadable with
`peft.PeftModel.from_pretrained(base, dir)`). Full weights: `model.safetensors` with Hugging Face
parameter names + `config.json` + the tokenizer files, i.e. a complete HF model directory.
Optimizer state (Adam moments, fp32 masters) goes to `optimizer.safetensors`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from server_stub.engine import UserError
from server_stub.models.lora_hub import LoraSpec
from server_stub.models.source import TokenizerFiles

if TYPE_CHECKING:
    import torch

LORA_WEIGHTS = "adapter_model.safetensors"
REWARD_HEAD_WEIGHTS = "reward_head.safetensors"  # a reward model's head, beside the adapter or model files
FULL_WEIGHTS = "model.safetensors"
OPTIMIZER_STATE = "optimizer.safetensors"


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata={"format": "pt"}
    )


def write_weights(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    lora: LoraSpec | None,
    base_model: str,
    model_config_json: str,
    tokenizer: TokenizerFiles,
) -> None:
    if lora is not None:
        _save(tensors, directory / LORA_WEIGHTS)
        lora.peft_config(base_model).save_pretrained(str(directory))
        return
    _save(tensors, directory / FULL_WEIGHTS)
    (directory / "config.json").write_text(model_config_json)
    write_tokenizer(directory, tokenizer)


def write_tokenizer(directory: Path, tokenizer: TokenizerFiles) -> None:
    """tokenizer.json + tokenizer_config.json, which `AutoTokenizer.from_pretrained(directory)` reads."""
    (directory / "tokenizer.json").write_text(tokenizer.tokenizer_json)
    specials = {
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **{k: v for k, v in specials.items() if v}}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def read_weights(directory: Path, is_lora: bool, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = directory / (LORA_WEIGHTS if is_lora else FULL_WEIGHTS)
    if not path.is_file():
        raise UserError(f"checkpoint {directory.name!r} has no {path.name}", field="path")
    return load_file(str(path), device=str(device))


def write_reward_head(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    _save(tensors, directory / REWARD_HEAD_WEIGHTS)


def read_reward_head(directory: Path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = directory / REWARD_HEAD_WEIGHTS
    if not path.is_file():
        raise UserError(f"checkpoint {directory.name!r} has no {path.name}", field="path")
    return load_file(str(path), device=str(device))


def write_optimizer(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    _save(tensors, directory / OPTIMIZER_STATE)


def read_optimizer(directory: Path, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = directory / OPTIMIZER_STATE
    if not path.is_file():
        raise UserError(f"checkpoint {directory.name!r} has no optimizer state", field="path")
    return load_file(str(path), device=str(device))
