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


OPENMP_SPIN_COUNT = "3000"
"""Busy-wait iterations of an idle OpenMP worker before it sleeps (libgomp's GOMP_SPINCOUNT); the
measurements that chose it are in bench/README.md, "Measurements behind the code's choices"."""


def prefer_short_openmp_spin() -> None:
    """Let idle OpenMP workers spin briefly, then sleep, unless the user set a wait policy or spin count.

    Sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every parallel op wake its worker, which on a
    small virtual machine costs more than the tiny model's op itself; libgomp's default spin (300,000
    iterations) keeps a core busy long after the op, which starves the client and any other process
    on a machine of few cores. OpenMP reads the variables once, when torch loads, so this only helps
    before the first `import torch`.
    """
    if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)


THREAD_INDEPENDENT_MATMULS = "AUTO,STRICT"
"""MKL's strict reproducibility mode (MKL_CBWR): a matrix product gives the same bits on any number of
threads. Without it, on AVX-512 machines MKL splits a long inner dimension (a weight gradient's sum
over tokens) across threads, so a step on one thread fewer, beside a decode, rounded differently;
at the same speed (bench/README.md, "Matrix products that do not depend on the thread count")."""


def prefer_thread_independent_matmuls() -> None:
    """Ask MKL for thread-independent matrix products, unless the user chose a MKL_CBWR mode.

    MKL reads the variable at its first call, so this only helps before the process's first matmul.
    """
    os.environ.setdefault("MKL_CBWR", THREAD_INDEPENDENT_MATMULS)
