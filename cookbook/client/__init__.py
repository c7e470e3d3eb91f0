"""The client SDK: wire types, the abstract clients recipes use, futures and typed errors.

Each export is listed once, in `_EXPORTS` under the module that defines it; `__all__` and the
lookup on first use derive from it. Everything but the wire types loads on first use: the server
imports `cookbook.client.types` and must not pull in the HTTP client (or anything else of the
cookbook) with it.
"""

from importlib import import_module
from typing import Any

from cookbook.client import types

_EXPORTS: dict[str, tuple[str, ...]] = {
    "cookbook.client.abstract": ("CustomLossFnV1", "SamplingClient", "ServiceClient", "TrainingClient"),
    "cookbook.client.connection": ("connect",),
    "cookbook.client.errors": (
        "APIConnectionError",
        "APIStatusError",
        "APITimeoutError",
        "BadRequestError",
        "ConflictError",
        "CookbookError",
        "InvalidInputError",
        "NotFoundError",
        "RequestFailedError",
        "RequestLostError",
    ),
    "cookbook.client.futures": ("APIFuture",),
    "cookbook.client.http": ("HttpSamplingClient", "HttpServiceClient", "HttpTrainingClient", "RetryPolicy"),
    "cookbook.client.types": (
        "AdamParams",
        "Datum",
        "EncodedTextChunk",
        "ForwardBackwardOutput",
        "LoraConfig",
        "ModelInput",
        "SampledSequence",
        "SampleResponse",
        "SamplingParams",
        "TensorData",
    ),
}
_MODULE_OF: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["types", *_MODULE_OF]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'cookbook.client' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
