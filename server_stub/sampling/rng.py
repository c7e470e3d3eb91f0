"""Counter-based random numbers: row r of a request with seed s draws u = hash(s, r, step).

A request's draws depend only on its own seed, so the same seed gives the same tokens whatever
else shares the batch, and every row's number comes from one vectorised hash per decode step
instead of a Python call per row (a torch.Generator per request would cost exactly that).
The hash is murmur3's 32-bit finaliser; multiplications are split into 16-bit halves so they never
overflow int64, which keeps Python ints and torch tensors bit-identical on every device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

MASK32 = 0xFFFFFFFF
_ROW_SALT = 0x9E3779B9
_STEP_SALT = 0x7F4A7C15

IntLike = TypeVar("IntLike", int, "torch.Tensor")


def _mul32(x: IntLike, constant: int) -> IntLike:
    """(x * constant) mod 2^32 for x < 2^32 without exceeding 2^48 in any intermediate."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def fmix32(x: IntLike) -> IntLike:
    """murmur3's finaliser: a bijection on 32-bit values that mixes every input bit into every output bit."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def row_key(seed: int, row: int) -> int:
    """A 32-bit key for sample `row` of a request seeded with `seed` (any non-negative int)."""
    key = fmix32(seed & MASK32)
    key = fmix32(key ^ ((seed >> 32) & MASK32) ^ _ROW_SALT)
    return fmix32(key ^ fmix32(row ^ _STEP_SALT))


def uniforms(keys: torch.Tensor, step: int) -> torch.Tensor:
    """One float64 in (0, 1) per key for decode step `step`."""
    bits = fmix32(keys ^ fmix32((step * 2 + 1) ^ _STEP_SALT))
    return (bits.double() + 0.5) / 4294967296.0


def uniform_block(keys: torch.Tensor, first_step: int, steps: int) -> torch.Tensor:
    """[keys, steps] float64: column i is `uniforms(keys, first_step + i)`, in one pass of the hash."""
    import torch

    step = torch.arange(first_step, first_step + steps, dtype=torch.int64, device=keys.device)
    bits = fmix32(keys.unsqueeze(-1) ^ fmix32((step * 2 + 1) ^ _STEP_SALT))
    return (bits.double() + 0.5) / 4294967296.0
