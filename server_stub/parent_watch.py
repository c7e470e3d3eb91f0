"""Stop the server when the process that started it is gone.

A recipe that auto-starts a server and is then killed with SIGKILL runs no cleanup, so the
child would live on as an orphan. The child watches its parent instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


def parent_alive(pid: int) -> bool:
    """True while `pid` is still our parent (an orphan is re-parented, so ppid changes)."""
    return os.getppid() == pid


def watch_parent(pid: int, on_gone: Callable[[], None], interval_s: float = 1.0) -> threading.Thread:
    """Call `on_gone` once, from a daemon thread, when `pid` stops being our parent."""

    def _loop() -> None:
        stop = threading.Event()
        while parent_alive(pid):
            stop.wait(interval_s)
        on_gone()

    thread = threading.Thread(target=_loop, name="parent-watch", daemon=True)
    thread.start()
    return thread
