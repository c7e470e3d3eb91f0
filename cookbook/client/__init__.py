"""The client SDK: wire types, the abstract clients recipes use, futures and typed errors."""

from cookbook.client import types
from cookbook.client.abstract import CustomLossFnV1, SamplingClient, ServiceClient, TrainingClient
from cookbook.client.connect import connect
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
