"""Freed tensor memory goes back to the operating system at once (glibc's malloc).

glibc serves an allocation below its mmap threshold from its heaps and keeps what is freed there for
reuse. The threshold starts at 128 KiB and rises, up to 32 MiB, each time a larger mapped block is
freed; after a model's first large pass the multi-MiB activations of every later pass therefore come
from the heaps, and what they leave behind when freed stays resident: the server's resident size
grows towards the sum of its passes. Setting the threshold fixes it, so blocks of
`MMAP_THRESHOLD_BYTES` or more are mapped when allocated and unmapped when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
USER_SETTING = "MALLOC_MMAP_THRESHOLD_"  # glibc's own environment variable wins when set


def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`; False where there is no glibc, or the user set one."""
    if not sys.platform.startswith("linux") or USER_SETTING in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
