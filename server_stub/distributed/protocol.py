"""What rank 0 tells the workers, and how each call's outcome comes back to it.

A command is an engine method name and its arguments, broadcast from rank 0; every rank runs it
and then sends rank 0 whether it failed, so a rank that disagrees is noticed at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server_stub.engine import UserError

STOP = "stop"  # workers leave their loop
HEARTBEAT = "heartbeat"  # nothing to do: proves rank 0 is alive


@dataclass(frozen=True)
class Command:
    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Failure:
    """An exception as it crosses ranks (exceptions themselves may not pickle)."""

    kind: str
    message: str
    user: bool  # a UserError: every rank raises the same one, the ranks still agree

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        return cls(type(exc).__name__, str(exc), isinstance(exc, UserError))


def send_command(command: Command) -> None:
    """Rank 0: broadcast the next command."""
    import torch.distributed as dist

    dist.broadcast_object_list([command], src=0)


def receive_command() -> Command:
    """A worker: wait for rank 0's next command."""
    import torch.distributed as dist

    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def collect_failures(own: Failure | None, world: int) -> list[Failure | None]:
    """Every rank's failure (None: it succeeded), on rank 0; an empty list elsewhere."""
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(own, gathered, dst=0)
    return list(gathered) if gathered is not None else []
