"""The client SDK: wire types, the abstract clients recipes use, futures and typed errors."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from cookbook.client import types

# Everything but the wire types loads on first use: the server imports `cookbook.client.types`
# and must not pull in the HTTP client (or anything else of the cookbook) with it.
_LAZY: dict[str, str] = {
    "CustomLossFnV1": "cookbook.client.abstract",
    "SamplingClient": "cookbook.client.abstract",
    "ServiceClient": "cookbook.client.abstract",
    "TrainingClient": "cookbook.client.abstract",
    "connect": "cookbook.client.connection",
    "APIConnectionError": "cookbook.client.errors",
    "APIStatusError": "cookbook.client.errors",
    "APITimeoutError": "cookbook.client.errors",
    "BadRequestError": "cookbook.client.errors",
    "ConflictError": "cookbook.client.errors",
    "CookbookError": "cookbook.client.errors",
    "InvalidInputError": "cookbook.client.errors",
    "NotFoundError": "cookbook.client.errors",
    "RequestFailedError": "cookbook.client.errors",
    "APIFuture": "cookbook.client.futures",
    "HttpSamplingClient": "cookbook.client.http",
    "HttpServiceClient": "cookbook.client.http",
    "HttpTrainingClient": "cookbook.client.http",
    "RetryPolicy": "cookbook.client.http",
    "AdamParams": "cookbook.client.types",
    "Datum": "cookbook.client.types",
    "EncodedTextChunk": "cookbook.client.types",
    "ForwardBackwardOutput": "cookbook.client.types",
    "LoraConfig": "cookbook.client.types",
    "ModelInput": "cookbook.client.types",
    "SampledSequence": "cookbook.client.types",
    "SampleResponse": "cookbook.client.types",
    "SamplingParams": "cookbook.client.types",
    "TensorData": "cookbook.client.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cookbook.client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from cookbook.client.abstract import CustomLossFnV1, SamplingClient, ServiceClient, TrainingClient
    from cookbook.client.connection import connect
    from cookbook.client.errors import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        BadRequestError,
        ConflictError,
        CookbookError,
        InvalidInputError,
        NotFoundError,
        RequestFailedError,
    )
    from cookbook.client.futures import APIFuture
    from cookbook.client.http import HttpSamplingClient, HttpServiceClient, HttpTrainingClient, RetryPolicy
    from cookbook.client.types import (
        AdamParams,
        Datum,
        EncodedTextChunk,
        ForwardBackwardOutput,
        LoraConfig,
        ModelInput,
        SampledSequence,
        SampleResponse,
        SamplingParams,
        TensorData,
    )

__all__ = [
    "APIConnectionError",
    "APIFuture",
    "APIStatusError",
    "APITimeoutError",
    "AdamParams",
    "BadRequestError",
    "ConflictError",
    "CookbookError",
    "CustomLossFnV1",
    "Datum",
    "EncodedTextChunk",
    "ForwardBackwardOutput",
    "HttpSamplingClient",
    "HttpServiceClient",
    "HttpTrainingClient",
    "InvalidInputError",
    "LoraConfig",
    "ModelInput",
    "NotFoundError",
    "RequestFailedError",
    "RetryPolicy",
    "SampleResponse",
    "SampledSequence",
    "SamplingClient",
    "SamplingParams",
    "ServiceClient",
    "TensorData",
    "TrainingClient",
    "connect",
    "types",
]
