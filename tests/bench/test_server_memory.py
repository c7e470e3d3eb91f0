"""The memory readers the real-model bench uses: /proc figures, per-window peaks, the stage clock."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from bench.server_memory import (
    KIB_PER_MIB,
    PeakWatch,
    memory_clock,
    memory_kib,
    reset_high_water_mark,
)

MIB = 1024 * 1024


class FakeProc:
    """A process whose RSS the test sets, with a kernel-style high-water mark that `reset` may reset."""

    def __init__(self, rss: int, resets: bool):
        self.rss, self.hwm, self.resets = rss, rss, resets

    def set(self, rss: int) -> None:
        self.rss, self.hwm = rss, max(self.hwm, rss)

    def read(self, pid: int) -> dict[str, int]:
        return {"VmRSS": self.rss, "VmHWM": self.hwm}

    def reset(self, pid: int) -> bool:
        if self.resets:
            self.hwm = self.rss
        return self.resets

    def watch(self) -> PeakWatch:
        return PeakWatch(1, read=self.read, reset=self.reset)


def test_memory_kib_reads_this_process() -> None:
    figures = memory_kib(os.getpid())
    assert set(figures) == {"VmRSS", "VmHWM"}
    assert 0 < figures["VmRSS"] <= figures["VmHWM"]


def test_a_window_peak_sees_memory_held_only_inside_it() -> None:
    watch = PeakWatch(os.getpid())
    held = b"\x01" * (64 * MIB)  # written, so resident
    del held
    watch.start_window()
    start = watch.sample()
    held = b"\x01" * (64 * MIB)
    watch.sample()
    del held
    peak = watch.window_peak_kib()
    assert peak - start >= 60 * KIB_PER_MIB
    assert watch.mark_resets == reset_high_water_mark(os.getpid())


def test_a_window_starts_at_the_current_rss_and_keeps_its_largest_sample() -> None:
    proc = FakeProc(rss=500, resets=False)
    watch = proc.watch()
    proc.set(3000)  # before the window: not its peak
    proc.set(800)
    watch.start_window()
    assert watch.window_peak_kib() == 800
    proc.set(1200)
    watch.sample()
    proc.set(900)
    assert watch.window_peak_kib() == 1200
    watch.start_window()
    assert watch.window_peak_kib() == 900
    assert [rss for _, rss in watch.timeline] == [1200]  # what `sample` read, in order


def test_the_kernel_mark_counts_only_when_it_was_reset() -> None:
    resetting = FakeProc(rss=500, resets=True)
    watch = resetting.watch()
    watch.start_window()
    resetting.set(2000)  # a spike between samples
    resetting.set(600)
    assert watch.mark_resets and watch.window_peak_kib() == 2000

    refusing = FakeProc(rss=500, resets=False)
    refusing.set(5000)  # an old peak the mark still holds
    refusing.set(500)
    watch = refusing.watch()
    watch.start_window()
    refusing.set(700)
    watch.sample()
    refusing.set(600)
    assert not watch.mark_resets
    assert watch.window_peak_kib() == 700
    assert watch.lifetime_peak_kib() == 5000


def test_the_thread_samples_until_the_watch_closes_and_stops_when_the_process_is_gone() -> None:
    proc = FakeProc(rss=500, resets=False)
    sampled_on_thread = threading.Event()
    gone = False

    def read(pid: int) -> dict[str, int]:
        if threading.current_thread().name == "peak-watch":
            if gone:
                raise FileNotFoundError(f"/proc/{pid}/status")
            sampled_on_thread.set()
        return proc.read(pid)

    with PeakWatch(1, interval_s=0.001, read=read, reset=proc.reset) as watch:
        proc.set(4000)
        sampled_on_thread.clear()
        sampled_on_thread.wait()  # a sample taken after the rise
        proc.set(100)
        assert watch.window_peak_kib() == 4000
        gone = True
    assert watch._thread is not None and not watch._thread.is_alive()


def test_memory_clock_adds_the_stage_memory_to_the_inner_clock() -> None:
    proc = FakeProc(rss=1024 * KIB_PER_MIB, resets=True)
    watch = proc.watch()

    def inner() -> Callable[[], dict[str, Any]]:
        return lambda: {"wall_s": 2.0}

    stop = memory_clock(inner, watch)()
    proc.set(3 * 1024 * KIB_PER_MIB)
    proc.set(1536 * KIB_PER_MIB)
    spent = stop()
    assert spent["wall_s"] == 2.0
    assert spent["server_rss_start_mib"] == 1024
    assert spent["server_peak_rss_mib"] == 3 * 1024
    assert spent["server_rss_end_mib"] == 1536
    assert len(spent["load_average"]) == 3
    started, ended = spent["server_timeline_s"]
    assert 0 <= started <= ended
