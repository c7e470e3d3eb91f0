"""The intra-op thread count of the calling thread, set for a block.

Torch keeps the count per thread (OpenMP's and MKL's settings are thread-local), so a decoding
thread and the compute thread can each use their own share of the cores at the same time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """Run the block on `count` intra-op threads (None: as it is), the count before restored after."""
    import torch

    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_beside_a_decode() -> int:
    """The calling thread's share while a decoding thread runs beside it: all its cores but one."""
    import torch

    return max(1, torch.get_num_threads() - 1)
