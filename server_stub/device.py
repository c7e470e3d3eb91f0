"""Which device and dtype the engine computes in ("auto": CUDA + bf16 when present, else CPU + fp32)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda when available; anything torch accepts ('cpu', 'cuda:1') is passed through."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on CUDA (fast, range-safe) and fp32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}; expected auto, {', '.join(sorted(set(_DTYPE_NAMES)))}")
    return getattr(torch, _DTYPE_NAMES[name])


def prefer_passive_openmp() -> None:
    """Let idle OpenMP workers sleep instead of spin, unless the user set OMP_WAIT_POLICY.

    On a small CPU shared with other processes (the client, other servers, tests), spinning
    workers wait for siblings that are descheduled, and small steps run several times slower
    (bench/README.md, Method). OpenMP
    reads the variable once, when torch loads, so this only helps before the first `import torch`.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
