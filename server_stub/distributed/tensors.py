"""Whole tensors between ranks: rank 0's dict to every rank, and a whole tensor cut to a parameter's shard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def broadcast_tensors(
    tensors: dict[str, torch.Tensor] | None, device: torch.device
) -> dict[str, torch.Tensor]:
    """Rank 0's `tensors` on every rank (the others pass None): names, shapes and dtypes first, then data."""
    import torch
    import torch.distributed as dist

    layout: list[Any] = [None]
    if dist.get_rank() == 0:
        assert tensors is not None
        layout[0] = [(name, tuple(t.shape), t.dtype) for name, t in tensors.items()]
    dist.broadcast_object_list(layout, src=0)
    received = {}
    for name, shape, dtype in layout[0]:
        if dist.get_rank() == 0:
            assert tensors is not None
            buffer = tensors[name].to(device).contiguous()
        else:
            buffer = torch.empty(shape, dtype=dtype, device=device)
        dist.broadcast(buffer, src=0)
        received[name] = buffer
    return received


def shard_like(whole: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`whole` as `param` holds it: this rank's shard of a sharded parameter, else unchanged."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(param, DTensor):
        return whole
    # Every rank holds `whole` already, so each cuts its own shard with no communication.
    return distribute_tensor(whole.to(param.device), param.device_mesh, param.placements, src_data_rank=None)


def local_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes this rank holds for `tensors` (its shards of sharded ones)."""
    from torch.distributed.tensor import DTensor

    held = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in held)
