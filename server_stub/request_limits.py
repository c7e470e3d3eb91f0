"""The size limits a request must fit before it is queued; each refusal is a 413 naming its flag.

The body's byte limit is applied while it is read (`request_body.py`); these apply to what the
parsed body asks for, before any of it reaches the engine. Each limit is a `ServerConfig` field,
and a refusal names the flag that raises it, so a user who needs more knows what to ask for.
"""

from __future__ import annotations

import json
from typing import Any

from cookbook.client import types
from server_stub.config import ServerConfig
from server_stub.engine import ModelLimits, UserError
from server_stub.request_body import PayloadTooLargeError


def over_limit(what: str, value: int, setting: str, limit: int, field: str) -> PayloadTooLargeError:
    flag = "--" + setting.replace("_", "-")
    return PayloadTooLargeError(
        f"{what} is {value}, over this server's limit of {limit} ({flag})", field=field
    )


def check_training_tokens(fwd: types.ForwardBackwardInput, config: ServerConfig, where: str) -> None:
    """Tokens per datum and per request of a forward / forward_backward."""
    prefix = f"{where}." if where else ""
    total = 0
    for index, datum in enumerate(fwd.data):
        length = datum.model_input.length
        if length > config.max_tokens_per_datum:
            raise over_limit(
                f"datum {index}'s length in tokens",
                length,
                "max_tokens_per_datum",
                config.max_tokens_per_datum,
                f"{prefix}data.{index}.model_input",
            )
        total += length
    if total > config.max_tokens_per_request:
        raise over_limit(
            "the request's total tokens",
            total,
            "max_tokens_per_request",
            config.max_tokens_per_request,
            f"{prefix}data",
        )


def check_sample_tokens(req: types.SampleRequest, limits: ModelLimits, config: ServerConfig) -> None:
    """num_samples x (prompt + tokens to generate): the work and memory one sample request asks for."""
    prompt = req.prompt.length
    generated = req.sampling_params.max_tokens or max(limits.max_context_length - prompt, 0)
    total = req.num_samples * (prompt + generated)
    if total > config.max_sample_tokens:
        raise over_limit(
            "num_samples x (prompt + max_tokens)",
            total,
            "max_sample_tokens",
            config.max_sample_tokens,
            "num_samples",
        )


def check_sample_batch(count: int, config: ServerConfig) -> None:
    """An asample_batch asks for at least one request, and no more than may wait for a batch."""
    if count == 0:
        raise UserError("requests: an asample_batch needs at least one request", field="requests")
    if count > config.max_pending_samples:
        raise over_limit(
            "the batch's number of requests",
            count,
            "max_pending_samples",
            config.max_pending_samples,
            "requests",
        )


def check_metadata(config: ServerConfig, field: str, value: Any) -> None:
    """user_metadata or tags, measured as JSON: they are kept in memory and written to run.json."""
    if value is None:
        return
    size = len(json.dumps(value, default=str).encode())
    if size > config.max_metadata_bytes:
        raise over_limit(
            f"{field} as JSON in bytes", size, "max_metadata_bytes", config.max_metadata_bytes, field
        )
