"""A training model made from a checkpoint in one call: SDK 0.38's `load_weights` without a model id.

The new model takes the checkpoint's base model and LoRA shape, then its weights (and, when asked,
its optimizer state). It runs as the model's creating call (seq id 0), so the client's calls 1,
2, ... wait behind it; if loading fails, the half-made model is unloaded again.
"""

from __future__ import annotations

from typing import Any

from cookbook.client import types
from server_stub.engine import Engine


def model_id_for(session_id: str, model_seq_id: int) -> str:
    """The id the SDK assumes without reading it back."""
    return f"{session_id}:train:{model_seq_id}"


def lora_config_of(info: types.WeightsInfoResponse) -> types.LoraConfig:
    """The LoRA shape a checkpoint was trained with (rank 0: full weights)."""
    if not info.is_lora:
        return types.LoraConfig(rank=0)
    return types.LoraConfig(
        rank=info.lora_rank or 0,
        train_unembed=info.train_unembed is not False,
        train_mlp=info.train_mlp is not False,
        train_attn=info.train_attn is not False,
    )


def create_from_checkpoint(
    engine: Engine,
    model_id: str,
    path: str,
    info: types.WeightsInfoResponse,
    optimizer: bool,
    user_metadata: dict[str, Any] | None,
) -> types.LoadWeightsResponse:
    """Create `model_id` shaped like the checkpoint at `path` and load it (compute thread)."""
    engine.create_model(
        model_id, info.base_model, lora_config_of(info), user_metadata, reward_head=bool(info.reward_head)
    )
    try:
        engine.load_state(model_id, path, optimizer)
    except Exception:
        engine.unload_model(model_id)
        raise
    return types.LoadWeightsResponse(path=path, model_id=model_id, type="load_weights")
