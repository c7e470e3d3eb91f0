"""A tqdm bar for training loops that stays out of the way of logs and pipes.

The bar shows steps done out of the total (starting at the resume step) and the latest headline
metrics. It is drawn only on an interactive terminal: piped or redirected stderr (CI, `nohup`,
`| tee`) would otherwise fill with carriage-return garbage. `COOKBOOK_PROGRESS=1` forces it on,
`COOKBOOK_PROGRESS=0` off. Console lines printed through `console_write` (ml_log does) and log
records through `TqdmLoggingHandler` appear above the bar instead of breaking it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Any

from tqdm import tqdm

from cookbook.utils.metric_display import HEADLINE_METRICS, format_metrics, pick_keys

PROGRESS_ENV = "COOKBOOK_PROGRESS"
POSTFIX_LIMIT = 3


def progress_enabled(stream: IO[str] | None = None) -> bool:
    """Whether to draw a bar on `stream` (default stderr): the env override, else "is a TTY"."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stream is None else stream
    return _is_tty(stream)


def _is_tty(stream: IO[str] | None) -> bool:
    if stream is None:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, closed, or detached
        return False


class TrainingProgress:
    """Steps of a training loop: `update(metrics)` after each step, `close()` (or `with`) at the end."""

    def __init__(
        self,
        total_steps: int,
        initial_step: int = 0,
        desc: str = "train",
        enabled: bool | None = None,
        stream: IO[str] | None = None,
    ):
        if not 0 <= initial_step <= total_steps:
            raise ValueError(
                f"need 0 <= initial_step <= total_steps, got initial_step={initial_step}, "
                f"total_steps={total_steps}"
            )
        stream = sys.stderr if stream is None else stream
        self.enabled = progress_enabled(stream) if enabled is None else enabled
        if stream is None:
            self.enabled = False
        self._n = initial_step
        self._bar = tqdm(
            total=total_steps,
            initial=initial_step,
            desc=desc,
            unit="step",
            file=stream,
            disable=not self.enabled,
            dynamic_ncols=True,
            leave=True,
        )

    @property
    def n(self) -> int:
        """Steps counted so far, including the initial (resumed) ones (also when the bar is off)."""
        return self._n

    def update(self, metrics: Mapping[str, Any] | None = None, steps: int = 1) -> None:
        """Advance by `steps` and show the latest headline metrics (if any) after the bar."""
        if metrics:
            keys = pick_keys(metrics, HEADLINE_METRICS, POSTFIX_LIMIT)
            self._bar.set_postfix_str(format_metrics(metrics, keys, sep=", "), refresh=False)
        self._n += steps
        self._bar.update(steps)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def console_write(line: str, stream: IO[str] | None = None) -> None:
    """Print a line above any active bar (plain print would tear a bar in half).

    Console output is a convenience: if its reader has gone (`| head`, a closed terminal) the
    line is dropped rather than the training run killed; the files in the log dir have it all.
    """
    stream = sys.stdout if stream is None else stream
    if stream is None:
        return
    try:
        tqdm.write(line, file=stream)
        stream.flush()
    except (BrokenPipeError, ValueError):  # reader gone, or stream closed
        pass


class TqdmLoggingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A console log handler that prints through tqdm, so records do not break the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console_write(self.format(record), self.stream)
        except Exception:
            self.handleError(record)
