"""A process's resident memory from /proc: now, its high-water mark, and the peak of each window of a run.

`VmHWM` is the kernel's own high-water mark of `VmRSS`, so it catches spikes between samples; writing
"5" to `/proc/<pid>/clear_refs` resets it to the current RSS, which gives each window (a pipeline
stage) its own mark. Where that write is refused, the mark covers the process's whole life, so a
`PeakWatch` also samples `VmRSS` on a thread every `interval_s` and a window's peak is the larger of
its largest sample and (when it could be reset) the mark.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cookbook.recipes.preference.rlhf.rlhf_pipeline import StageClock

KIB_PER_MIB = 1024
RESET_HIGH_WATER_MARK = "5"  # clear_refs: reset the peak resident set size to the current one

MemoryReader = Callable[[int], dict[str, int]]


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory now (`VmRSS`) and its high-water mark (`VmHWM`), in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def reset_high_water_mark(pid: int) -> bool:
    """Reset the process's `VmHWM` to its current RSS; False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text(RESET_HIGH_WATER_MARK)
    except OSError:
        return False
    return True


class PeakWatch:
    """The peak resident memory of process `pid` within each window (`start_window` .. `window_peak_kib`).

    Use as a context manager: the sampling thread runs inside it. `read` and `reset` are the /proc
    readers above (tests pass fakes)."""

    def __init__(
        self,
        pid: int,
        interval_s: float = 0.1,
        read: MemoryReader = memory_kib,
        reset: Callable[[int], bool] = reset_high_water_mark,
    ):
        self.pid = pid
        self.interval_s = interval_s
        self._read = read
        self._reset = reset
        self._lock = threading.Lock()
        self._sampled_peak = 0
        self._mark_was_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self.timeline: list[tuple[float, int]] = []  # (seconds since the watch was made, RSS KiB) per sample

    def __enter__(self) -> PeakWatch:
        self.start_window()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="peak-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except OSError:  # the process is gone: nothing more to sample
                return

    def sample(self) -> int:
        """Read the RSS now, fold it into the window's peak, and return it (KiB)."""
        rss = self._read(self.pid)["VmRSS"]
        with self._lock:
            self._sampled_peak = max(self._sampled_peak, rss)
            self.timeline.append((self.elapsed_s(), rss))
        return rss

    def start_window(self) -> None:
        """A new window starts at the current RSS (and resets the kernel's mark where allowed)."""
        reset = self._reset(self.pid)
        rss = self._read(self.pid)["VmRSS"]
        with self._lock:
            self._sampled_peak = rss
            self._mark_was_reset = reset

    def elapsed_s(self) -> float:
        """Seconds since the watch was made (the timeline's clock)."""
        return time.monotonic() - self._started

    @property
    def mark_resets(self) -> bool:
        """Whether the kernel's high-water mark was reset at the current window's start."""
        return self._mark_was_reset

    def window_peak_kib(self) -> int:
        """The largest RSS seen since `start_window`: samples, and the kernel's mark when it was reset."""
        figures = self._read(self.pid)
        with self._lock:
            self._sampled_peak = max(self._sampled_peak, figures["VmRSS"])
            peak = self._sampled_peak
            if self._mark_was_reset:
                peak = max(peak, figures["VmHWM"])
        return peak

    def lifetime_peak_kib(self) -> int:
        """The kernel's mark (the whole life of the process where resets are refused, else since the last reset)."""
        return self._read(self.pid)["VmHWM"]


def memory_clock(inner: StageClock, watch: PeakWatch) -> StageClock:
    """`inner` (a pipeline stage clock) that also reports the watched process's memory over the stage:
    RSS at its start and end and its peak, in MiB, when it ran on the watch's timeline, and the machine's
    load average at its end."""

    def start() -> Callable[[], dict[str, Any]]:
        watch.start_window()
        at_start = watch.sample()
        started_s = watch.elapsed_s()
        stop_inner = inner()

        def stop() -> dict[str, Any]:
            spent = stop_inner()
            figures = {
                "server_timeline_s": (started_s, watch.elapsed_s()),
                "server_rss_start_mib": at_start / KIB_PER_MIB,
                "server_rss_end_mib": watch.sample() / KIB_PER_MIB,
                "server_peak_rss_mib": watch.window_peak_kib() / KIB_PER_MIB,
                "load_average": os.getloadavg(),
            }
            print(f"[memory] stage done: {figures}", flush=True)  # a long run that is stopped keeps these
            return {**spent, **figures}

        return stop

    return start
