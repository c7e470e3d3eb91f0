"""The compute side of a server, built from its `ServerConfig`: the engine and the scheduler around it.

`python -m server_stub` puts the web app in front of these; the cookbook's in-process client
(`inprocess://`) drives the same two objects directly. Both build them here, so a setting means the
same thing either way.
"""

from __future__ import annotations

from server_stub.config import ServerConfig
from server_stub.engine import Engine
from server_stub.scheduler import Scheduler


def build_engine(config: ServerConfig) -> Engine:
    """The PyTorch engine (or a multi-rank leader), importing torch only now: it is slow to import."""
    from server_stub.distributed.launch import build_leader, wants_ranks

    if wants_ranks(config):
        return build_leader(config)
    from server_stub.torch_engine import TorchEngine

    config.storage_dir.mkdir(parents=True, exist_ok=True)
    return TorchEngine(
        config.storage_dir,
        device=config.device,
        dtype=config.dtype,
        extra_models=dict(config.extra_models) or None,
        max_pass_tokens=config.max_pass_tokens,
        activation_budget_mib=config.activation_budget_mib,
    )


def build_scheduler(engine: Engine, config: ServerConfig) -> Scheduler:
    """The scheduler that orders, batches and runs `engine`'s calls, with the config's batching limits."""
    return Scheduler(
        engine,
        sample_batch_rows=config.sample_batch_rows,
        sample_batch_window=config.sample_batch_window_seconds,
        sample_batch_max_wait=config.sample_batch_max_wait_seconds,
        sample_batch_wait_fraction=config.sample_batch_wait_fraction,
        max_pending_samples=config.max_pending_samples,
        max_seq_ahead=config.max_seq_ahead,
    )
