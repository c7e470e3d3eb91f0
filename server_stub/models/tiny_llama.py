"""The built-in "tiny-llama": a 0.6M-parameter Llama that every process builds with identical weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server_stub.models.builtin_tokenizer import BUILTIN_VOCAB_SIZE

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

TINY_LLAMA_NAME = "tiny-llama"
TINY_LLAMA_CONTEXT = 512
TINY_LLAMA_SEED = 1234
TINY_LLAMA_EOS_ID = 0  # `<|endoftext|>` is the first (special) token of the built-in vocabulary


def tiny_llama_config() -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=BUILTIN_VOCAB_SIZE,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=512,
        tie_word_embeddings=True,
        max_position_embeddings=TINY_LLAMA_CONTEXT,
        bos_token_id=None,
        eos_token_id=TINY_LLAMA_EOS_ID,
        pad_token_id=TINY_LLAMA_EOS_ID,
    )


def build_tiny_llama(device: torch.device, dtype: torch.dtype) -> LlamaForCausalLM:
    """Random init from a fixed seed on CPU (so every device starts from the same numbers), then moved."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_LLAMA_SEED)
        model = LlamaForCausalLM(tiny_llama_config())
    model.name_or_path = TINY_LLAMA_NAME
    return model.to(device=device, dtype=dtype).eval()
