"""Giving the heap memory a large pass freed back to the operating system (glibc only).

glibc keeps what tensors free in its heaps (one per thread that allocated, up to eight per core) for
later allocations, so a server's resident set stays at each heap's own peak after a pass of several
GiB, and the heaps of different threads add up. `release_free_memory` (malloc_trim) hands every
heap's free pages back. Where the C library is not glibc (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _glibc() -> Any | None:
    """The process's C library if it is glibc (it has malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, TypeError, AttributeError):  # no dlopen(NULL) (Windows) or not glibc
        return None
    return libc


def release_free_memory() -> bool:
    """Return the free pages of every heap to the OS; True if glibc gave any back."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
