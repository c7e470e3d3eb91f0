"""Arrays through the wire dtypes: bfloat16 and int32 widen like the official SDK, layouts are checked."""

from __future__ import annotations

import numpy as np
import pytest

from cookbook.client import types
from cookbook.client.proto import ProtobufDecodeError, schema
from cookbook.client.proto.tensors import (
    BFLOAT16,
    FLOAT32,
    INT32,
    INT64,
    batched_tensor_from_arrays,
    batched_tensor_to_arrays,
    bfloat16_bits_to_float32,
    float32_to_bfloat16_bits,
    tensor_data_from_proto,
    tensor_data_to_proto,
)

from .random_wire import sparse_tensor


def test_bfloat16_bits_match_the_top_half_of_float32_for_representable_values() -> None:
    exact = np.array(
        [0.0, -0.0, 1.0, -2.5, 0.15625, 2.0**127, -(2.0**-126), np.inf, -np.inf], dtype=np.float32
    )
    bits = float32_to_bfloat16_bits(exact)
    np.testing.assert_array_equal(bits, (exact.view(np.uint32) >> 16).astype(np.uint16))
    np.testing.assert_array_equal(bfloat16_bits_to_float32(bits), exact)


def test_bfloat16_rounds_to_nearest_even_and_keeps_nan() -> None:
    # 1 + 2^-8 is halfway between two bfloat16 values: ties go to the even one (1.0);
    # 1 + 3 * 2^-8 goes up to 1 + 2^-6.
    values = np.array([1 + 2**-8, 1 + 3 * 2**-8, np.nan], dtype=np.float32)
    widened = bfloat16_bits_to_float32(float32_to_bfloat16_bits(values))
    assert widened[0] == 1.0 and widened[1] == 1 + 2**-6 and np.isnan(widened[2])


@pytest.mark.parametrize(
    ("wire_dtype", "label"), [(FLOAT32, "float32"), (BFLOAT16, "float32"), (INT32, "int64"), (INT64, "int64")]
)
@pytest.mark.parametrize("sparse", [False, True])
def test_tensor_round_trip_in_every_wire_dtype(
    wire_dtype: int, label: types.TensorDtype, sparse: bool
) -> None:
    rng = np.random.default_rng(wire_dtype)
    if sparse:
        tensor = sparse_tensor(rng, 4, 5, label)
    else:
        values = (
            rng.integers(-1000, 1000, (3, 4))
            if label == "int64"
            else rng.normal(size=(3, 4)).astype(np.float32)
        )
        tensor = types.TensorData.from_numpy(values)
    if wire_dtype == BFLOAT16:  # bfloat16 keeps 8 bits of mantissa: compare with the rounded values
        expected = bfloat16_bits_to_float32(
            float32_to_bfloat16_bits(np.asarray(tensor.data, dtype=np.float32))
        )
        tensor = tensor.model_copy(update={"data": expected.tolist()})
    message = schema.Tensor()
    tensor_data_to_proto(tensor, message, wire_dtype)
    assert message.dtype == wire_dtype
    assert message.WhichOneof("encoding") == ("sparse_csr" if sparse else "dense")
    decoded = tensor_data_from_proto(schema.Tensor.FromString(message.SerializeToString()), "t")
    assert decoded == tensor
    np.testing.assert_array_equal(decoded.to_numpy(), tensor.to_numpy())


def test_tensor_without_shape_decodes_as_one_dimensional() -> None:
    message = schema.Tensor()
    tensor_data_to_proto(types.TensorData(data=[1, 2, 3], dtype="int64"), message)
    decoded = tensor_data_from_proto(message, "t")
    assert decoded.shape is None and decoded.to_numpy().tolist() == [1, 2, 3]


def test_int32_refuses_values_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="int32"):
        tensor_data_to_proto(types.TensorData(data=[2**40], dtype="int64"), schema.Tensor(), INT32)


@pytest.mark.parametrize("wire_dtype", [FLOAT32, BFLOAT16, INT32, INT64])
def test_batched_tensor_round_trip(wire_dtype: int) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-100, 100, (n, 3)).astype(np.float32) for n in (0, 2, 5)]
    message = schema.BatchedTensor()
    batched_tensor_from_arrays(arrays, wire_dtype, message)
    assert list(message.trailing_shape) == [3]
    decoded = batched_tensor_to_arrays(schema.BatchedTensor.FromString(message.SerializeToString()), 3, "b")
    assert [a.shape for a in decoded] == [(0, 3), (2, 3), (5, 3)]
    for ours, theirs in zip(decoded, arrays, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert decoded[1].dtype == (np.int64 if wire_dtype in (INT32, INT64) else np.float32)


def test_batched_tensor_refuses_values_that_do_not_fill_rows() -> None:
    message = schema.BatchedTensor(dtype=FLOAT32, trailing_shape=[2])
    message.data = np.zeros(3, dtype="<f4").tobytes()
    message.offsets = np.array([0, 12], dtype="<i8").tobytes()
    with pytest.raises(ProtobufDecodeError, match="rows of shape"):
        batched_tensor_to_arrays(message, 1, "b")
