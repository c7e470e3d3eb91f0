"""Building the distributed engine on rank 0: join the group (spawning this host's workers for
`--ranks N`, or as one rank of a `torchrun` launch) and wrap the rank's engine for the web layer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from server_stub.config import ServerConfig
from server_stub.distributed.group import join_group
from server_stub.distributed.leader import LeaderEngine
from server_stub.distributed.rank_engine import RankEngine

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV) and int(os.environ["WORLD_SIZE"]) > 1


def wants_ranks(config: ServerConfig) -> bool:
    """True when this server computes on several processes."""
    return config.ranks > 1 or launched_by_torchrun()


def worker_arguments(config: ServerConfig) -> list[str]:
    """The command-line settings a worker needs to build the same models as rank 0."""
    arguments = [
        "--device",
        config.device,
        "--dtype",
        config.dtype,
        "--max-pass-tokens",
        str(config.max_pass_tokens),
        "--activation-budget-mib",
        str(config.activation_budget_mib),
    ]
    for name, path in config.extra_models.items():
        arguments += ["--model", f"{name}={path}"]
    return arguments


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalWorkers:
    """Ranks 1..N-1 as child processes of this one, on a loopback rendezvous."""

    def __init__(self, config: ServerConfig):
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
            WORLD_SIZE=str(config.ranks),
            RANK="0",
            LOCAL_RANK="0",
        )
        command = [sys.executable, "-m", "server_stub.worker", *worker_arguments(config)]
        command += ["--exit-with-parent", str(os.getpid())]
        self.processes = [
            subprocess.Popen(command, env={**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank)})
            for rank in range(1, config.ranks)
        ]

    def death(self) -> str | None:
        """Which worker has exited, if any."""
        for rank, process in enumerate(self.processes, start=1):
            code = process.poll()
            if code is not None:
                return f"rank {rank} exited (code {code})"
        return None

    def fail_start_on_death(self, joined: threading.Event) -> None:
        """Until the group is joined, end this process if a worker dies (rank 0 would wait for it)."""
        while not joined.wait(0.2):
            death = self.death()
            if death is not None:
                print(
                    f"server_stub: error: {death} while the ranks were starting", file=sys.stderr, flush=True
                )
                os._exit(1)

    def wait(self, timeout: float) -> None:
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()


def build_leader(config: ServerConfig) -> LeaderEngine:
    """Rank 0's engine; with `--ranks N` (not under torchrun) it first starts this host's workers."""
    workers = None if launched_by_torchrun() else LocalWorkers(config)
    joined = threading.Event()
    if workers is not None:
        threading.Thread(target=workers.fail_start_on_death, args=(joined,), daemon=True).start()
    place = join_group(config.device)
    joined.set()
    if place.rank != 0:
        raise RuntimeError("the web layer runs on rank 0; start the other ranks with -m server_stub.worker")
    config.storage_dir.mkdir(parents=True, exist_ok=True)
    local = RankEngine(
        config.storage_dir,
        place,
        dtype=config.dtype,
        extra_models=dict(config.extra_models) or None,
        max_pass_tokens=config.max_pass_tokens,
        activation_budget_mib=config.activation_budget_mib,
    )
    leader = LeaderEngine(local, workers.death if workers is not None else None)
    if workers is not None:
        leader.on_close(lambda: workers.wait(timeout=10))
    return leader


def worker_storage() -> Path:
    """A worker's private scratch storage: rank 0 alone reads and writes the real one."""
    return Path(tempfile.mkdtemp(prefix="server_stub-rank-"))
