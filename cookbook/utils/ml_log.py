"""A run's logger: config.json, metrics.jsonl, a console line per step, logs.log, and wandb if asked.

`metrics.jsonl` is the record of a run that plots, comparisons and resumed runs read; it gets one
`{"step": step, **metrics}` object per `log_metrics` call, flushed at once so a killed run keeps
every step it logged. The console gets a short line of the headline numbers, printed through
tqdm so that a progress bar survives. wandb is optional and never required to run.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cookbook.utils.jsonable import to_jsonable, write_json
from cookbook.utils.jsonl import open_for_append, write_line
from cookbook.utils.metric_display import CONSOLE_EXTRA_METRICS, HEADLINE_METRICS, format_metrics, pick_keys
from cookbook.utils.progress import TqdmLoggingHandler, console_write

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOGS_FILE = "logs.log"
CONSOLE_LIMIT = 8

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"


class Logger:
    """Where a training loop sends its config and per-step metrics. Use `with` or call `close()`."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        wandb_project: str | None = None,
        wandb_name: str | None = None,
        config: Any = None,
        console: bool = True,
        configure_python_logging: bool = True,
        console_stream: IO[str] | None = None,
    ):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.log_dir / METRICS_FILE
        self.config_path = self.log_dir / CONFIG_FILE
        self._console = console
        self._console_stream = console_stream
        self._lock = threading.Lock()
        self._handlers = _attach_python_logging(self.log_dir, console) if configure_python_logging else []
        self._metrics_file: IO[str] | None = open_for_append(self.metrics_path)
        self._wandb_run = (
            _start_wandb(wandb_project, wandb_name, self.log_dir, config) if wandb_project else None
        )
        if config is not None:
            write_json(self.config_path, config)

    def log_hparams(self, config: Any) -> None:
        """Record the run's config (any chz/dataclass/pydantic object or mapping) in config.json."""
        write_json(self.config_path, config)
        if self._wandb_run is not None:
            self._wandb_run.config.update(to_jsonable(config), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Append `{"step": step, **metrics}` to metrics.jsonl, print it, and send it to wandb."""
        _check_metrics(metrics, step)
        with self._lock:
            if self._metrics_file is None:
                raise RuntimeError(f"log_metrics(step={step}) called on a closed Logger ({self.log_dir})")
            write_line(self._metrics_file, {"step": step, **metrics})
        if self._console:
            console_write(console_line(metrics, step), self._console_stream)
        if self._wandb_run is not None:
            self._wandb_run.log(to_jsonable(dict(metrics)), step=step)

    def close(self) -> None:
        """Close metrics.jsonl, finish wandb, and detach this run's Python logging handlers."""
        with self._lock:
            if self._metrics_file is not None:
                self._metrics_file.close()
                self._metrics_file = None
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None
        root = logging.getLogger()
        for handler in self._handlers:
            root.removeHandler(handler)
            handler.close()
        self._handlers = []

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _attach_python_logging(log_dir: Path, console: bool) -> list[logging.Handler]:
    """cookbook INFO and everyone's warnings go to logs.log (and to the console if no handler prints
    them yet); third-party INFO chatter (httpx logs every request) stays out. Returns the handlers
    added to the root logger, for `close()` to remove."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_dir / LOGS_FILE, encoding="utf-8")
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    handlers: list[logging.Handler] = [file_handler]
    if console and not root.handlers:
        console_handler = TqdmLoggingHandler(sys.stderr)
        console_handler.setLevel(logging.INFO)
        console_handler.setFormatter(logging.Formatter(_CONSOLE_FORMAT))
        handlers.append(console_handler)
    for handler in handlers:
        root.addHandler(handler)
    cookbook_logger = logging.getLogger("cookbook")
    if cookbook_logger.level == logging.NOTSET:
        cookbook_logger.setLevel(logging.INFO)
    return handlers


def _check_metrics(metrics: Mapping[str, Any], step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of name -> value, got {type(metrics).__name__}")
    bad = [k for k in metrics if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metric names must be strings, got {bad!r}")
    if "step" in metrics:
        raise ValueError("'step' is reserved in metrics.jsonl; pass it as log_metrics(..., step=...)")


def console_line(metrics: Mapping[str, Any], step: int) -> str:
    """`step 12 | train_mean_nll 1.234 | ...`: the headline metrics present, then lr and time."""
    keys = pick_keys(metrics, HEADLINE_METRICS + CONSOLE_EXTRA_METRICS, CONSOLE_LIMIT)
    body = format_metrics(metrics, keys)
    return f"step {step} | {body}" if body else f"step {step}"


def _start_wandb(project: str, name: str | None, log_dir: Path, config: Any) -> Any:
    """A wandb run, or None (with a one-line warning) when wandb is missing or fails to start."""
    try:
        import wandb
    except ImportError:
        logger.warning(
            "wandb_project=%r is set but wandb is not installed; logging to %s only", project, log_dir
        )
        return None
    try:
        return wandb.init(
            project=project,
            name=name,
            dir=str(log_dir),
            config=to_jsonable(config) if config is not None else None,
        )
    except Exception as e:  # a logging backend must not kill the run (no login, no network, ...)
        logger.warning("wandb.init failed (%s: %s); logging to %s only", type(e).__name__, e, log_dir)
        return None


def setup_logging(
    log_dir: str | os.PathLike[str],
    wandb_project: str | None = None,
    wandb_name: str | None = None,
    config: Any = None,
    *,
    console: bool = True,
    configure_python_logging: bool = True,
) -> Logger:
    """The Logger for a run in `log_dir` (created if needed); writes config.json if `config` is given.

    `console=False` silences the per-step line and console log records;
    `configure_python_logging=False` leaves Python logging alone (no logs.log).
    """
    run_logger = Logger(
        log_dir,
        wandb_project=wandb_project,
        wandb_name=wandb_name,
        config=config,
        console=console,
        configure_python_logging=configure_python_logging,
    )
    logger.info("logging run to %s", run_logger.log_dir)
    return run_logger
