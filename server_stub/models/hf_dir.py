"""Base models from local Hugging Face directories (config.json, weights, tokenizer.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server_stub.engine import ModelLimits
from server_stub.models.source import BaseModelSource, TokenizerFiles

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
# transformers 5 saves the template beside tokenizer_config.json rather than inside it.
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def special_token(value: Any) -> str | None:
    """tokenizer_config.json stores a special token as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def chat_template_text(value: Any) -> str | None:
    """A tokenizer config's chat_template: one string, or a list of named templates (take "default")."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) and value else None


def _int_ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, int))
    return ()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def source_from_config(
    name: str,
    config: dict[str, Any],
    generation: dict[str, Any],
    origin: Path,
    load_tokenizer: Callable[[], TokenizerFiles],
    build_model: Callable[[torch.device, torch.dtype], PreTrainedModel],
    reference: str | None,
) -> BaseModelSource:
    """A source from a model's config.json contents (and generation_config.json's, when there is one).

    `origin` is the file or directory named in errors; `reference` is what exports name as the base.
    """
    text_config = config.get("text_config", config)
    context = next((text_config[k] for k in _CONTEXT_KEYS if isinstance(text_config.get(k), int)), None)
    vocab = text_config.get("vocab_size")
    if not isinstance(context, int) or not isinstance(vocab, int):
        raise ValueError(
            f"model {name!r}: the config of {origin} lacks vocab_size or a maximum context length"
        )
    eos_ids = _int_ids(text_config.get("eos_token_id")) + _int_ids(generation.get("eos_token_id"))
    return BaseModelSource(
        name=name,
        arch=str(config.get("model_type", "unknown")),
        limits=ModelLimits(vocab_size=vocab, max_context_length=context),
        config_eos_ids=tuple(dict.fromkeys(eos_ids)),
        load_tokenizer=load_tokenizer,
        build_model=build_model,
        reference=reference,
    )


def hf_dir_source(name: str, directory: str | Path) -> BaseModelSource:
    """Reads config.json now (so a bad directory fails at start-up); weights load on first use."""
    root = Path(directory).expanduser().resolve()
    config = _read_json(root / "config.json")
    if not config:
        raise ValueError(f"model {name!r}: no config.json in {root}")
    if not (root / "tokenizer.json").is_file():
        raise ValueError(f"model {name!r}: no tokenizer.json in {root} (needed to serve the tokenizer)")

    def load_tokenizer() -> TokenizerFiles:
        tok_config = _read_json(root / "tokenizer_config.json")
        template_file = root / CHAT_TEMPLATE_FILE
        template = chat_template_text(tok_config.get("chat_template")) or (
            template_file.read_text() if template_file.is_file() else None
        )
        return TokenizerFiles(
            tokenizer_json=(root / "tokenizer.json").read_text(),
            bos_token=special_token(tok_config.get("bos_token")),
            eos_token=special_token(tok_config.get("eos_token")),
            pad_token=special_token(tok_config.get("pad_token")),
            chat_template=template,
        )

    def build_model(device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(root), dtype=dtype)
        return model.to(device).eval()

    generation = _read_json(root / "generation_config.json")
    return source_from_config(name, config, generation, root, load_tokenizer, build_model, str(root))
