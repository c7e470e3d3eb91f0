"""Server settings: one frozen object built from the command line and the environment.

Everything the web layer tunes (long-poll time, how long results are kept, batching caps) lives
here so tests can shrink it and the CLI can expose it without touching the code that uses it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

STORAGE_ENV = "COOKBOOK_SERVER_STORAGE"
API_KEY_ENV = "COOKBOOK_API_KEY"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class ConfigError(ValueError):
    """The server was asked to start with settings it refuses (message says which and why)."""


def default_storage_dir() -> Path:
    """Where checkpoints live unless told otherwise: $COOKBOOK_SERVER_STORAGE or a per-user cache."""
    env = os.environ.get(STORAGE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cookbook-server"


@dataclass(frozen=True)
class ServerConfig:
    """How to listen, which engine to build, and the web layer's limits."""

    host: str = "127.0.0.1"
    port: int = 8000
    storage_dir: Path = field(default_factory=default_storage_dir)
    device: str = "auto"
    dtype: str = "auto"
    api_key: str | None = None
    extra_models: dict[str, str] = field(default_factory=dict)
    log_level: str = "info"
    # retrieve_future holds a pending request this long before answering try_again; the
    # official SDK's HTTP timeout for it is 45 s.
    long_poll_seconds: float = 25.0
    # A fetched result stays this long so a client that lost the answer can poll again.
    result_grace_seconds: float = 120.0
    # A result nobody fetched is dropped after this long, or earlier when the caps are hit.
    result_ttl_seconds: float = 3600.0
    max_stored_results: int = 10_000
    max_stored_bytes: int = 1 << 30
    # Sampling: at most this many rows (sum of num_samples) go to one engine.sample call.
    sample_batch_rows: int = 256
    # Before running a batch that is not full, wait while sample requests keep arriving: until
    # none has arrived for this long (other work runs meanwhile). A burst of concurrent requests
    # reaches the server over tens of milliseconds, with gaps of up to ~15 ms on a busy 2-core
    # machine (measured: 32 requests spread over 27-77 ms); a batch that starts too early makes
    # the rest wait for a whole generation.
    sample_batch_window_seconds: float = 0.02
    # ... or for this fraction of the previous batch's run time, if longer: on a loaded machine
    # gaps grow (20+ ms measured) and so do generations, and a straggler left out costs a whole one.
    sample_batch_wait_fraction: float = 0.1
    # ... but never hold the oldest waiting request longer than this.
    sample_batch_max_wait_seconds: float = 0.5
    max_pending_samples: int = 10_000
    max_num_samples: int = 256
    # A training call may arrive at most this many seq ids ahead of the next one to run.
    max_seq_ahead: int = 100_000
    # Idle keep-alive connections are closed after this long. Longer than clients' own expiry
    # (httpx: 5 s) so a client never reuses a connection the server is closing at that instant.
    keep_alive_seconds: float = 65.0
    # Exit when this process (the one that started us) is gone; None = run until stopped.
    exit_with_parent: int | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if min(self.sample_batch_window_seconds, self.sample_batch_max_wait_seconds,
               self.sample_batch_wait_fraction) < 0:
            raise ConfigError("sample batching waits must be non-negative")
        if self.long_poll_seconds < 0 or self.result_grace_seconds < 0 or self.result_ttl_seconds <= 0:
            raise ConfigError("long-poll, grace and ttl times must be non-negative (ttl positive)")
        if min(self.max_stored_results, self.sample_batch_rows, self.max_pending_samples,
               self.max_num_samples, self.max_seq_ahead) < 1:
            raise ConfigError("queue and batch limits must be at least 1")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key must not be empty")


def _model_spec(text: str) -> tuple[str, str]:
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"--model expects NAME=HF_DIR, got {text!r}")
    if not Path(directory).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"--model {name}: {directory!r} is not a directory")
    return name, str(Path(directory).expanduser())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server_stub",
        description="Local training server speaking the Tinker JSON wire (SDK 0.24.x).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on; anything but loopback requires an API key")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port)")
    parser.add_argument("--storage", type=Path, default=None,
                        help=f"checkpoint directory (default ${STORAGE_ENV} or ~/.cache/cookbook-server)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--api-key", default=None,
                        help=f"require this X-API-Key on every request (default ${API_KEY_ENV})")
    parser.add_argument("--model", action="append", type=_model_spec, default=[], metavar="NAME=HF_DIR",
                        help="serve a local Hugging Face model directory under NAME (repeatable)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                        help="shut down when process PID (our parent) exits, e.g. after a SIGKILL")
    parser.add_argument("--long-poll-seconds", type=float, default=ServerConfig.long_poll_seconds,
                        help="how long retrieve_future holds a pending request")
    parser.add_argument("--sample-batch-window-seconds", type=float,
                        default=ServerConfig.sample_batch_window_seconds,
                        help="run a sampling batch once no request has arrived for this long")
    parser.add_argument("--sample-batch-max-wait-seconds", type=float,
                        default=ServerConfig.sample_batch_max_wait_seconds,
                        help="never hold a sample request longer than this waiting for company")
    parser.add_argument("--sample-batch-wait-fraction", type=float, default=ServerConfig.sample_batch_wait_fraction,
                        help="... or wait for this fraction of the previous sampling batch's run time, if longer")
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse the command line (and the environment) into a ServerConfig."""
    args = build_parser().parse_args(argv)
    models = dict(args.model)
    if len(models) != len(args.model):
        raise ConfigError("--model names must be unique")
    return ServerConfig(
        host=args.host,
        port=args.port,
        storage_dir=(args.storage.expanduser() if args.storage is not None else default_storage_dir()),
        device=args.device,
        dtype=args.dtype,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None,
        extra_models=models,
        log_level=args.log_level,
        long_poll_seconds=args.long_poll_seconds,
        sample_batch_window_seconds=args.sample_batch_window_seconds,
        sample_batch_max_wait_seconds=args.sample_batch_max_wait_seconds,
        sample_batch_wait_fraction=args.sample_batch_wait_fraction,
        exit_with_parent=args.exit_with_parent,
    )
