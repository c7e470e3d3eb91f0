"""Joining and leaving the process group every rank belongs to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.distributed.device_mesh import DeviceMesh

COLLECTIVE_TIMEOUT = timedelta(seconds=600)
"""A collective that has not finished by then fails (a hung rank), so no call hangs forever. A dead
rank is noticed at once (its connections close); this only bounds a hang, and must outlast rank 0
writing or reading a large checkpoint while the others wait."""

HEARTBEAT_SECONDS = 20.0
"""Rank 0 pings idle workers this often, so a worker's wait for the next command never times out."""


@dataclass(frozen=True)
class RankPlace:
    """Where this process sits in the group."""

    rank: int
    world: int
    device: torch.device
    mesh: DeviceMesh


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPUs: the only difference between the two code paths."""
    return "nccl" if device.type == "cuda" else "gloo"


def join_group(device_name: str) -> RankPlace:
    """Join the group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from server_stub.device import resolve_device

    device = resolve_device(device_name)
    if device.type == "cuda":  # one GPU per rank on each host
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), timeout=COLLECTIVE_TIMEOUT)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    return RankPlace(dist.get_rank(), dist.get_world_size(), device, mesh)


def leave_group() -> None:
    """Tear the group down explicitly (see the package docstring for why it must not be left to exit)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
