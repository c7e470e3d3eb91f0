"""`python -m server_stub.worker`: one rank of a distributed server, as `torchrun` starts it.

Rank 0 runs the whole server (web layer included, the same flags as `python -m server_stub`);
every other rank joins the process group and runs the training calls rank 0 sends, on its shard:

    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 --rdzv-backend c10d \\
        --rdzv-endpoint HOST0:29500 -m server_stub.worker --host 0.0.0.0 --api-key KEY

`python -m server_stub --ranks N` starts the workers of one host itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence

from server_stub.config import ConfigError, config_from_args

logger = logging.getLogger("server_stub.worker")


def serve_commands(argv: Sequence[str] | None) -> int:
    """A worker rank: run rank 0's commands until it says stop (or the group fails)."""
    from server_stub.distributed.group import join_group, leave_group
    from server_stub.distributed.launch import worker_storage
    from server_stub.distributed.protocol import HEARTBEAT, STOP, Failure, collect_failures, receive_command
    from server_stub.distributed.rank_engine import RankEngine

    config = config_from_args(argv)
    # Ctrl-C and torchrun's SIGTERM reach every rank at once; rank 0 then stops the workers in order,
    # so none dies mid-collective. A worker still exits when rank 0 is gone (its connections close).
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    if config.exit_with_parent is not None:
        from server_stub.parent_watch import watch_parent

        watch_parent(config.exit_with_parent, lambda: os._exit(1))
    place = join_group(config.device)
    storage = worker_storage()
    engine = RankEngine(
        storage,
        place,
        dtype=config.dtype,
        extra_models=dict(config.extra_models) or None,
        max_pass_tokens=config.max_pass_tokens,
        activation_budget_mib=config.activation_budget_mib,
    )
    try:
        while True:
            command = receive_command()
            if command.method == STOP:
                return 0
            if command.method == HEARTBEAT:
                continue
            failure = None
            try:
                getattr(engine, command.method)(*command.args)
            except Exception as exc:
                failure = Failure.of(exc)
            collect_failures(failure, place.world)
    except Exception:
        logger.exception("rank %d: lost the process group", place.rank)
        return 1
    finally:
        leave_group()
        shutil.rmtree(storage, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    if int(os.environ.get("RANK", "0")) == 0:
        from server_stub.__main__ import main as serve

        return serve(argv)
    try:
        return serve_commands(argv)
    except ConfigError as exc:
        print(f"server_stub.worker: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
