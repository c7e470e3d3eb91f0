"""From a rendered example (tokens + per-token weights) to a training Datum, and the NLL metric.

A Datum is next-token aligned: position i of its model input predicts `target_tokens[i]`, so
inputs are the sequence without its last token and targets/weights the sequence without its
first. The server's cross_entropy is a plain weighted sum; `reduction="mean"` makes each
example's weights sum to 1, so every example counts equally whatever its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from cookbook.client.types import Datum, EncodedTextChunk, ModelInput, TensorData

Reduction = Literal["none", "mean"]


class NoTrainedTokensError(ValueError):
    """An example has no token with a non-zero weight (e.g. truncation cut the answer off)."""


def datum_from_model_input_weights(
    model_input: ModelInput,
    weights: np.ndarray | Sequence[float],
    max_length: int | None = None,
    reduction: Reduction = "none",
) -> Datum:
    """A training Datum from an unshifted example, right-truncated to `max_length` tokens."""
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 1 or len(weights) != model_input.length:
        raise ValueError(
            f"weights must be 1-D with one value per token: got shape {weights.shape} "
            f"for {model_input.length} tokens"
        )
    if not np.isfinite(weights).all():
        raise ValueError("weights contain NaN or infinite values")
    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")
    if max_length is not None:
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 (one input and one target), got {max_length}")
        model_input, weights = _truncate(model_input, max_length), weights[:max_length]
    if model_input.length < 2:
        raise ValueError(f"an example needs at least 2 tokens to predict one, got {model_input.length}")
    target_weights = weights[1:]
    if not target_weights.any():
        where = f" after truncation to max_length={max_length}" if max_length is not None else ""
        raise NoTrainedTokensError(f"no token with a non-zero weight remains{where}")
    if reduction == "mean":
        total = float(target_weights.sum())
        if total <= 0:
            raise ValueError(f"reduction='mean' needs a positive weight sum, got {total}")
        target_weights = target_weights / np.float32(total)
    tokens = np.asarray(model_input.to_ints(), dtype=np.int64)
    return Datum(
        model_input=_truncate(model_input, model_input.length - 1),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(tokens[1:]),
            "weights": TensorData.from_numpy(target_weights.astype(np.float32)),
        },
    )


def _truncate(model_input: ModelInput, length: int) -> ModelInput:
    """The first `length` tokens, keeping chunk boundaries and dropping chunks left empty."""
    chunks: list[EncodedTextChunk] = []
    remaining = length
    for chunk in model_input.chunks:
        if remaining <= 0:
            break
        kept = chunk.tokens[:remaining]
        chunks.append(chunk if len(kept) == len(chunk.tokens) else EncodedTextChunk(tokens=kept))
        remaining -= len(kept)
    return ModelInput(chunks=chunks)


def compute_mean_nll(
    logprobs_list: Sequence[TensorData | np.ndarray | Sequence[float]],
    weights_list: Sequence[TensorData | np.ndarray | Sequence[float]],
) -> float:
    """Weighted mean negative log-likelihood over a batch: -sum(w * logp) / sum(w)."""
    if len(logprobs_list) != len(weights_list):
        raise ValueError(f"{len(logprobs_list)} logprob arrays but {len(weights_list)} weight arrays")
    total_loss, total_weight = 0.0, 0.0
    for i, (logprobs, weights) in enumerate(zip(logprobs_list, weights_list, strict=True)):
        lp, w = _as_array(logprobs), _as_array(weights)
        if lp.shape != w.shape:
            raise ValueError(f"datum {i}: logprobs shape {lp.shape} != weights shape {w.shape}")
        total_loss -= float(np.dot(lp, w))
        total_weight += float(w.sum())
    if total_weight == 0:
        raise ValueError("the total weight is zero: there is no trained token to average over")
    return total_loss / total_weight


def _as_array(values: TensorData | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(values, TensorData):
        return values.to_numpy().astype(np.float64)
    return np.asarray(values, dtype=np.float64)
