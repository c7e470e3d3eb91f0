"""Base models from GGUF files, read through transformers' GGUF support and dequantised on load.

The GGUF holds the config, the tokenizer (with its special tokens and chat template) and the
weights; transformers converts all three. A dequantised model keeps a "gguf" quantization config,
which transformers 5 and peft then treat as a quantized model (saving, LoRA, export), so it is
dropped once the weights are plain tensors of the server's dtype.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from server_stub.models.hf_dir import chat_template_text, source_from_config
from server_stub.models.source import BaseModelSource, TokenizerFiles

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

GGUF_SUFFIX = ".gguf"


def forget_quantization(model: PreTrainedModel) -> PreTrainedModel:
    """Make a dequantised model an ordinary one: no quantizer, no quantization config."""
    model.hf_quantizer = None
    model.is_quantized = False
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            del config.quantization_config
    return model


def gguf_source(name: str, file: str | Path) -> BaseModelSource:
    """Reads the GGUF's config now (so a bad file fails at start-up); tokenizer and weights on first use."""
    from transformers import AutoConfig, GenerationConfig

    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"model {name!r}: {path} is not a file")
    where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    try:
        config = AutoConfig.from_pretrained(**where)
    except Exception as exc:
        raise ValueError(f"model {name!r}: {path} is not a GGUF transformers can read ({exc})") from exc
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    generation = GenerationConfig.from_model_config(config).to_dict()

    def load_tokenizer() -> TokenizerFiles:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(**where)
        return TokenizerFiles(
            tokenizer_json=tokenizer.backend_tokenizer.to_str(),
            bos_token=tokenizer.bos_token,
            eos_token=tokenizer.eos_token,
            pad_token=tokenizer.pad_token,
            chat_template=chat_template_text(tokenizer.chat_template),
        )

    def build_model(device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(**where, dtype=dtype)
        return forget_quantization(model).to(device=device, dtype=dtype).eval()

    # No other tool loads a .gguf path as a base model, so exports carry the dequantised base instead.
    return source_from_config(name, config_dict, generation, path, load_tokenizer, build_model, None)
