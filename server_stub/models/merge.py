"""A checkpoint's weights folded into a plain Hugging Face model: what `--merged` exports.

LoRA on a tied output layer adapts only the output path (the input embeddings stay the base's), so
the output layer is untied before merging; a plain `merge_and_unload()` would add the update to the
shared matrix and change the input embeddings too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from server_stub.engine import UserError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def untie_output_embeddings(model: PreTrainedModel) -> bool:
    """Give the output layer its own copy of a tied matrix; True if it was tied."""
    import torch

    output, inputs = model.get_output_embeddings(), model.get_input_embeddings()
    if output is None or output.weight.data_ptr() != inputs.weight.data_ptr():
        return False
    output.weight = torch.nn.Parameter(inputs.weight.detach().clone(), requires_grad=False)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.tie_word_embeddings = False
    return True


def merge_lora(model: PreTrainedModel, adapter_dir: Path, adapts_output: bool) -> PreTrainedModel:
    """`model` with the PEFT adapter in `adapter_dir` merged into its weights."""
    from peft import PeftModel

    if adapts_output:
        untie_output_embeddings(model)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def load_full_weights(model: PreTrainedModel, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy a full-weight checkpoint (parameter names as in training) into `model`."""
    import torch

    params = dict(model.named_parameters())
    missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or extra:
        raise UserError(
            f"{source} does not match its base model: missing {missing[:3]}, unexpected {extra[:3]}",
            field="path",
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name].to(dtype=param.dtype))
