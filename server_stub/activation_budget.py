"""How many tokens one piece of a pass may hold so that what it keeps alive fits a memory budget.

Two things grow with a pass's tokens, both estimated from the model's config in its dtype:
- a training forward keeps, per token and decoder layer, the tensors its backward reads: about
  `SAVED_HIDDEN_WIDTHS` vectors of the hidden width (the layer input, the two norms' inputs and
  outputs, q, k, v, the attention output, the output projection's input) and
  `SAVED_INTERMEDIATE_WIDTHS` of the MLP's width (gate, its SiLU, up, their product); the estimate is
  checked against the bytes autograd saves (tests/server/engine/test_activation_budget.py);
- a sampling batch keeps a key and a value vector per token, layer and key-value head in its cache.
An inference forward keeps neither (one layer's temporaries at a time): `max_pass_tokens` bounds it.
"""

from __future__ import annotations

from typing import Any

SAVED_HIDDEN_WIDTHS = 10
SAVED_INTERMEDIATE_WIDTHS = 4
MIB = 1024 * 1024


def training_bytes_per_token(config: Any, element_bytes: int) -> int:
    """Estimated activation bytes a training forward keeps per token of a model with this config."""
    hidden = int(config.hidden_size)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    per_layer = SAVED_HIDDEN_WIDTHS * hidden + SAVED_INTERMEDIATE_WIDTHS * intermediate
    return int(config.num_hidden_layers) * per_layer * element_bytes


def cache_bytes_per_token(config: Any, element_bytes: int) -> int:
    """Bytes a KV cache holds per token (keys and values of every layer)."""
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or int(config.hidden_size) // heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    return 2 * int(config.num_hidden_layers) * kv_heads * head_dim * element_bytes


def tokens_within(budget_mib: int, bytes_per_token: int) -> int:
    """Tokens whose `bytes_per_token` fit `budget_mib` (at least 1)."""
    return max(1, budget_mib * MIB // bytes_per_token)
