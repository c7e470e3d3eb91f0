"""Wall and CPU time of a pipeline stage, on both sides of the wire.

On a shared machine wall time says more about the neighbours than about the pipeline, so each
stage also records the CPU seconds this (client) process spent and, when the server is a child
we started, the CPU seconds the server process spent: their sum is the stage's real cost.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc); None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the ")" closing the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class StageTiming:
    """What one stage cost in this invocation (`status`: "ran", "skipped" when already finished, "off")."""

    status: str
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None

    @property
    def total_cpu_s(self) -> float | None:
        return None if self.server_cpu_s is None else self.client_cpu_s + self.server_cpu_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_cpu_s": self.total_cpu_s}


class StageClock:
    """Started at construction; `stop()` gives the stage's wall time and CPU seconds.

    `server_pid` is the local server's process (None for a remote server, whose CPU is unknown).
    """

    def __init__(self, server_pid: int | None = None):
        self.server_pid = server_pid
        self.wall_start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.server_start = process_cpu_seconds(server_pid) if server_pid is not None else None

    def stop(self) -> StageTiming:
        server_cpu = None
        if self.server_pid is not None and self.server_start is not None:
            now = process_cpu_seconds(self.server_pid)
            server_cpu = None if now is None else now - self.server_start
        return StageTiming("ran", time.perf_counter() - self.wall_start, time.process_time() - self.cpu_start,
                           server_cpu)
