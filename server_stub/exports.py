"""A checkpoint as a directory other tools load, one writer per export format.

- `checkpoint`: the checkpoint's own files plus `checkpoint_complete` (what Tinker's archive holds).
- `peft`: a PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`) whose
  `base_model_name_or_path` is the base's real source, with the tokenizer files. A base no other
  tool can load by name (a built-in model, a GGUF file) is carried in `base_model/` as a Hugging
  Face directory (a GGUF dequantised to fp32), which the reference then names.
- `peft_without_base`: the same adapter without `base_model/`, for a caller who names its base.
- `merged`: a complete Hugging Face model directory (config, fp32 `model.safetensors`, generation
  config, tokenizer files); LoRA is merged in, full weights are written as trained.

A reward model's `peft` and `merged` exports also carry its head, `reward_head.safetensors`
(`reward_head.weight` [1, hidden]: score = final hidden state at the last token @ weight.T).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.models.hf_dir import CHAT_TEMPLATE_FILE
from server_stub.models.merge import load_full_weights, merge_lora
from server_stub.models.source import BaseModelSource, TokenizerFiles
from server_stub.storage.checkpoints import CheckpointMeta
from server_stub.storage.weight_files import LORA_WEIGHTS, REWARD_HEAD_WEIGHTS, read_weights, write_tokenizer

BUNDLED_BASE_DIR = "base_model"
COMPLETE_MARKER = "checkpoint_complete"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FORMATS = ("peft", "peft_without_base")
# Files of a Hugging Face directory that describe its tokenizer and chat format.
TOKENIZER_FILE_NAMES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    CHAT_TEMPLATE_FILE,
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


@dataclass(frozen=True)
class ExportInputs:
    """One checkpoint and its base model: everything a writer reads."""

    tinker_path: str
    meta: CheckpointMeta
    checkpoint_dir: Path
    base: BaseModelSource
    tokenizer: TokenizerFiles


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # checkpoint files are never modified in place, so sharing them is safe
    except OSError:
        shutil.copyfile(source, target)


def write_tokenizer_files(base: BaseModelSource, tokenizer: TokenizerFiles, out: Path) -> None:
    """The base's own tokenizer files when it came from a directory, else the served tokenizer's;
    the chat template included either way."""
    reference = Path(base.reference) if base.reference else None
    if reference is not None and reference.is_dir():
        for name in TOKENIZER_FILE_NAMES:
            if (reference / name).is_file():
                shutil.copyfile(reference / name, out / name)
        return
    write_tokenizer(out, tokenizer)
    if tokenizer.chat_template is not None:
        (out / CHAT_TEMPLATE_FILE).write_text(tokenizer.chat_template)


def _write_base_model(inputs: ExportInputs, out: Path) -> None:
    import torch

    out.mkdir()
    inputs.base.build_model(torch.device("cpu"), torch.float32).save_pretrained(out)
    write_tokenizer_files(inputs.base, inputs.tokenizer, out)


def _write_reward_head(inputs: ExportInputs, out: Path) -> None:
    if inputs.meta.reward_head:
        _link_or_copy(inputs.checkpoint_dir / REWARD_HEAD_WEIGHTS, out / REWARD_HEAD_WEIGHTS)


def write_checkpoint(inputs: ExportInputs, out: Path) -> None:
    for path in sorted(inputs.checkpoint_dir.iterdir()):
        if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            _link_or_copy(path, out / path.name)
    (out / COMPLETE_MARKER).touch()


def _write_adapter(inputs: ExportInputs, out: Path, bundle_base: bool) -> None:
    _link_or_copy(inputs.checkpoint_dir / LORA_WEIGHTS, out / LORA_WEIGHTS)
    adapter_config = json.loads((inputs.checkpoint_dir / ADAPTER_CONFIG).read_text())
    if bundle_base and inputs.base.reference is None:
        _write_base_model(inputs, out / BUNDLED_BASE_DIR)
    # Unbundled and without a reference, the base goes by its server alias until the caller names it.
    adapter_config["base_model_name_or_path"] = inputs.base.reference or (
        BUNDLED_BASE_DIR if bundle_base else inputs.base.name
    )
    (out / ADAPTER_CONFIG).write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    write_tokenizer_files(inputs.base, inputs.tokenizer, out)
    _write_reward_head(inputs, out)


def write_peft(inputs: ExportInputs, out: Path) -> None:
    _write_adapter(inputs, out, bundle_base=True)


def write_peft_without_base(inputs: ExportInputs, out: Path) -> None:
    _write_adapter(inputs, out, bundle_base=False)


def write_merged(inputs: ExportInputs, out: Path) -> None:
    import torch

    model = inputs.base.build_model(torch.device("cpu"), torch.float32)
    lora = inputs.meta.lora
    if lora is not None:
        model = merge_lora(model, inputs.checkpoint_dir, adapts_output=lora.train_unembed)
    else:
        tensors = read_weights(inputs.checkpoint_dir, False, torch.device("cpu"))
        load_full_weights(model, tensors, inputs.tinker_path)
    model.name_or_path = inputs.base.reference or inputs.base.name
    model.save_pretrained(out)
    write_tokenizer_files(inputs.base, inputs.tokenizer, out)
    _write_reward_head(inputs, out)


EXPORT_WRITERS: dict[types.CheckpointExportFormat, Callable[[ExportInputs, Path], None]] = {
    "checkpoint": write_checkpoint,
    "peft": write_peft,
    "peft_without_base": write_peft_without_base,
    "merged": write_merged,
}
assert set(EXPORT_WRITERS) == set(types.CHECKPOINT_EXPORT_FORMATS)


def check_export(fmt: str, tinker_path: str, is_lora: bool) -> None:
    """A UserError (400) for a format this server does not write or this checkpoint cannot take."""
    if fmt not in EXPORT_WRITERS:
        raise UserError(
            f"format must be one of {list(types.CHECKPOINT_EXPORT_FORMATS)}, got {fmt!r}", field="format"
        )
    if fmt in ADAPTER_FORMATS and not is_lora:
        raise UserError(
            f"{tinker_path} holds full weights, not a LoRA adapter: export it with format 'merged'",
            field="format",
        )


def write_export(fmt: str, inputs: ExportInputs, out: Path) -> None:
    """Fill the empty directory `out` with `inputs` in format `fmt`."""
    check_export(fmt, inputs.tinker_path, inputs.meta.is_lora)
    EXPORT_WRITERS[fmt](inputs, out)  # type: ignore[index]
