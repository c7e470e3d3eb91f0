"""`cookbook.client` exports each name from the module that defines it, loading only the wire types up front."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import cookbook.client

# The names recipes and users import from the package; none may disappear.
PUBLIC = {
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
    "RequestLostError",
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
}


def test_every_public_name_is_exported_once() -> None:
    assert set(cookbook.client.__all__) == PUBLIC
    assert len(cookbook.client.__all__) == len(PUBLIC)


@pytest.mark.parametrize("name", sorted(PUBLIC - {"types"}))
def test_each_export_is_the_object_its_module_defines(name: str) -> None:
    module = cookbook.client._MODULE_OF[name]
    assert getattr(cookbook.client, name) is getattr(importlib.import_module(module), name)
    assert name in dir(cookbook.client)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = cookbook.client.Nope  # type: ignore[attr-defined]


def test_the_wire_types_load_without_the_rest_of_the_client() -> None:
    probe = (
        "import sys, cookbook.client.types; "
        "print(sorted(m for m in sys.modules if m.startswith('cookbook') and m not in "
        "('cookbook', 'cookbook.client', 'cookbook.client.types')))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
