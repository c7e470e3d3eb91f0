"""Arrays on the protobuf wire: `Tensor` (dense or CSR-sparse) and `BatchedTensor`, through numpy.

Values travel as little-endian bytes in one of four wire dtypes. On decoding they widen to the two
dtypes `TensorData` knows, as the official SDK does: int32 to int64, bfloat16 to float32
(bfloat16 is the top half of a float32, so widening is a bit shift and needs no torch).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cookbook.client import types
from cookbook.client.proto import schema
from cookbook.client.proto.errors import ProtobufDecodeError


@dataclass(frozen=True)
class WireDType:
    """One value of the `DType` enum: how its values lie in the bytes and what they decode to."""

    name: str
    storage: np.dtype[Any]
    decoded: types.TensorDtype


_WIRE_DTYPE_ROWS = (
    WireDType("DTYPE_FLOAT32", np.dtype("<f4"), "float32"),
    WireDType("DTYPE_INT64", np.dtype("<i8"), "int64"),
    WireDType("DTYPE_INT32", np.dtype("<i4"), "int64"),
    WireDType("DTYPE_BFLOAT16", np.dtype("<u2"), "float32"),
)
WIRE_DTYPES: dict[int, WireDType] = {schema.enum_value("DType", row.name): row for row in _WIRE_DTYPE_ROWS}
FLOAT32 = schema.enum_value("DType", "DTYPE_FLOAT32")
INT64 = schema.enum_value("DType", "DTYPE_INT64")
INT32 = schema.enum_value("DType", "DTYPE_INT32")
BFLOAT16 = schema.enum_value("DType", "DTYPE_BFLOAT16")
# The wire dtype a TensorData is written in unless the writer asks for a narrower one.
NATURAL_WIRE_DTYPE: dict[str, int] = {"float32": FLOAT32, "int64": INT64}
_DECODED_NUMPY: dict[str, np.dtype[Any]] = {"float32": np.dtype(np.float32), "int64": np.dtype(np.int64)}
_INT32_RANGE = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(values), np.uint16(0x7FC0), rounded)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def values_to_bytes(values: np.ndarray, wire_dtype: int) -> bytes:
    """Values (float or int) as the little-endian bytes of `wire_dtype`."""
    row = WIRE_DTYPES[wire_dtype]
    if wire_dtype == BFLOAT16:
        return float32_to_bfloat16_bits(np.asarray(values, dtype=np.float32)).tobytes()
    if (
        wire_dtype == INT32
        and values.size
        and (values.min() < _INT32_RANGE[0] or values.max() > _INT32_RANGE[1])
    ):
        raise ValueError("a value does not fit in int32")
    return np.asarray(values, dtype=row.storage).tobytes()


def values_from_bytes(raw: bytes, wire_dtype: int, field: str) -> np.ndarray:
    """The values in `raw`, widened to float32 or int64 (a read-only array when no widening)."""
    row = WIRE_DTYPES.get(wire_dtype)
    if row is None:
        raise ProtobufDecodeError(f"unknown dtype {wire_dtype}", field)
    if len(raw) % row.storage.itemsize:
        raise ProtobufDecodeError(
            f"{len(raw)} bytes is not a whole number of {row.name} values ({row.storage.itemsize} bytes each)",
            field,
        )
    values = np.frombuffer(raw, dtype=row.storage)
    if wire_dtype == BFLOAT16:
        return bfloat16_bits_to_float32(values)
    return values.astype(_DECODED_NUMPY[row.decoded], copy=False)


def int32_bytes(tokens: list[int]) -> bytes:
    """Token ids as int32 little-endian bytes (the wire's form for tokens)."""
    try:
        return np.array(tokens, dtype="<i4").tobytes()
    except OverflowError as exc:
        raise ValueError("a token id does not fit in int32") from exc


def int32_list(raw: bytes, field: str) -> list[int]:
    """Token ids from int32 little-endian bytes."""
    return values_from_bytes(raw, INT32, field).tolist()


# -- Tensor -----------------------------------------------------------------------------------


def tensor_data_to_proto(tensor: types.TensorData, out: Any, wire_dtype: int | None = None) -> None:
    """Write `tensor` into the `Tensor` message `out`, in `wire_dtype` (default: its own dtype)."""
    dtype = NATURAL_WIRE_DTYPE[tensor.dtype] if wire_dtype is None else wire_dtype
    out.dtype = dtype
    if tensor.shape is not None:
        out.shape.extend(tensor.shape)
    values = np.asarray(tensor.data, dtype=_DECODED_NUMPY[tensor.dtype])
    if tensor.sparse_crow_indices is None:
        out.dense = values_to_bytes(values, dtype)
        return
    if tensor.sparse_col_indices is None:
        raise ValueError("a sparse tensor needs sparse_col_indices with its sparse_crow_indices")
    out.sparse_csr.values = values_to_bytes(values, dtype)
    out.sparse_csr.crow_indices = np.asarray(tensor.sparse_crow_indices, dtype="<i8").tobytes()
    out.sparse_csr.col_indices = np.asarray(tensor.sparse_col_indices, dtype="<i8").tobytes()


def tensor_data_from_proto(message: Any, field: str) -> types.TensorData:
    """A `Tensor` message as TensorData (sparse stays sparse), after checking its layout."""
    row = WIRE_DTYPES.get(message.dtype)
    if row is None:
        raise ProtobufDecodeError(f"unknown or unset dtype {message.dtype}", f"{field}.dtype")
    shape = list(message.shape) or None
    if shape is not None and any(size < 0 for size in shape):
        raise ProtobufDecodeError(f"negative size in shape {shape}", f"{field}.shape")
    if message.WhichOneof("encoding") == "sparse_csr":
        csr = message.sparse_csr
        values = values_from_bytes(csr.values, message.dtype, f"{field}.sparse_csr.values")
        crow = values_from_bytes(csr.crow_indices, INT64, f"{field}.sparse_csr.crow_indices")
        col = values_from_bytes(csr.col_indices, INT64, f"{field}.sparse_csr.col_indices")
        _check_csr(shape, values.size, crow, col, f"{field}.sparse_csr")
        return types.TensorData.model_construct(
            data=values.tolist(),
            dtype=row.decoded,
            shape=shape,
            sparse_crow_indices=crow.tolist(),
            sparse_col_indices=col.tolist(),
        )
    values = values_from_bytes(message.dense, message.dtype, f"{field}.dense")
    if shape is not None and math.prod(shape) != values.size:
        raise ProtobufDecodeError(f"shape {shape} does not hold {values.size} values", f"{field}.shape")
    return types.TensorData.model_construct(data=values.tolist(), dtype=row.decoded, shape=shape)


def _check_csr(shape: list[int] | None, nnz: int, crow: np.ndarray, col: np.ndarray, field: str) -> None:
    if shape is None or len(shape) != 2:
        raise ProtobufDecodeError(f"a sparse tensor needs a 2-D shape, got {shape}", field)
    rows, cols = shape
    if crow.size != rows + 1:
        raise ProtobufDecodeError(
            f"crow_indices has {crow.size} entries, expected rows + 1 = {rows + 1}", field
        )
    if crow[0] != 0 or crow[-1] != nnz or (np.diff(crow) < 0).any():
        raise ProtobufDecodeError(f"crow_indices must rise from 0 to the {nnz} stored values", field)
    if col.size != nnz or (nnz and (col.min() < 0 or col.max() >= cols)):
        raise ProtobufDecodeError(f"col_indices must be {nnz} column numbers below {cols}", field)


# -- BatchedTensor ----------------------------------------------------------------------------


def batched_tensor_from_arrays(arrays: list[np.ndarray], wire_dtype: int, out: Any) -> None:
    """Write one array per datum (equal trailing dims) into the `BatchedTensor` message `out`."""
    itemsize = WIRE_DTYPES[wire_dtype].storage.itemsize
    sizes = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    out.dtype = wire_dtype
    out.offsets = np.concatenate(([0], np.cumsum(sizes) * itemsize)).astype("<i8").tobytes()
    if arrays:
        out.trailing_shape.extend(arrays[0].shape[1:])
        out.data = values_to_bytes(np.concatenate([a.reshape(-1) for a in arrays]), wire_dtype)


def batched_tensor_to_arrays(message: Any, num_datums: int, field: str) -> list[np.ndarray]:
    """The per-datum arrays of a `BatchedTensor`, each shaped `[len / prod(trailing), *trailing]`."""
    values = values_from_bytes(message.data, message.dtype, f"{field}.data")
    offsets = values_from_bytes(message.offsets, INT64, f"{field}.offsets")
    itemsize = WIRE_DTYPES[message.dtype].storage.itemsize
    if offsets.size != num_datums + 1:
        raise ProtobufDecodeError(f"{offsets.size} offsets for {num_datums} datums", f"{field}.offsets")
    if offsets.size and (
        offsets[0] != 0
        or offsets[-1] != len(message.data)
        or (np.diff(offsets) < 0).any()
        or (offsets % itemsize).any()
    ):
        raise ProtobufDecodeError(
            "offsets must rise from 0 to the data's length in whole values", f"{field}.offsets"
        )
    trailing = list(message.trailing_shape)
    per_row = math.prod(trailing)
    bounds = (offsets // itemsize).tolist()
    arrays = []
    for start, end in itertools.pairwise(bounds):
        if (end - start) % per_row if per_row else end != start:
            raise ProtobufDecodeError(
                f"a datum's {end - start} values do not fill rows of shape {trailing}",
                f"{field}.trailing_shape",
            )
        arrays.append(values[start:end].reshape((end - start) // per_row if per_row else 0, *trailing))
    return arrays
