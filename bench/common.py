"""What every bench shares: process settings, robust statistics, tables, JSON output, the server.

Import this module before anything imports torch. It applies the server's OpenMP wait policy
(`server_stub.device.prefer_short_openmp_spin`), which OpenMP reads once, when torch loads. The server
child inherits it and gets the bench process's thread count, so both sides of a comparison compute alike.

The machine may be shared, so every comparison is run in rounds that alternate which side goes
first, and reported as a median with its range; ratios are taken per round (the two sides of a
round ran seconds apart, under similar load) and summarised the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server_stub.device import prefer_short_openmp_spin

prefer_short_openmp_spin()  # before anything imports torch
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bench never needs the hub; fail fast without network

BASE_MODEL = "tiny-llama"


def vocab_size() -> int:
    """The built-in model's vocabulary (prompts and targets are drawn from it)."""
    from server_stub.models.tiny_llama import tiny_llama_config

    return int(tiny_llama_config().vocab_size)


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    """What a bench run was asked for on the command line."""

    quick: bool = False
    threads: int = 2
    rounds: int | None = None  # None: each bench's own default
    base_url: str | None = None  # an already running server instead of a fresh one
    json_path: Path | None = None
    server_args: tuple[str, ...] = ()

    def rounds_or(self, default: int) -> int:
        return self.rounds if self.rounds is not None else (1 if self.quick else default)


def default_threads() -> int:
    """torch's own default on this machine (one per core), which is what a deployed server uses."""
    return max(1, os.cpu_count() or 1)


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes and one round: proves it runs, not speed"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="torch threads, in this process and in the server (default: one per core)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per comparison")
    parser.add_argument(
        "--base-url",
        default=None,
        help="benchmark this running server instead of starting one (its thread count is its own)",
    )
    parser.add_argument(
        "--server-args", default="", help="extra arguments for the started server, one string"
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also save the results as JSON"
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    if args.threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {args.rounds}")
    return BenchSettings(
        quick=args.quick,
        threads=args.threads,
        rounds=args.rounds,
        base_url=args.base_url,
        json_path=args.json,
        server_args=tuple(args.server_args.split()),
    )


def use_threads(threads: int) -> None:
    """This process's torch thread count (the server child gets it through OMP_NUM_THREADS)."""
    import torch

    torch.set_num_threads(threads)


# -- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """A median and the range it came from."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no measurements to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> Spread:
        return cls(values["median"], values["low"], values["high"], int(values["n"]))

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.low * factor, self.high * factor, self.n)

    def text(self, digits: int | None = None) -> str:
        if self.n == 1:
            return number(self.median, digits)
        return f"{number(self.median, digits)} [{number(self.low, digits)}-{number(self.high, digits)}]"

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "low": self.low, "high": self.high, "n": self.n}


def number(value: float, digits: int | None = None) -> str:
    """Three significant figures or so, without scientific notation."""
    if digits is None:
        size = abs(value)
        digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:.{digits}f}"


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """Per-round ratios: each pair was measured back to back, so load drift cancels within a pair."""
    return Spread.of([a / b for a, b in zip(numerators, denominators, strict=True)])


def interleaved(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run every side once per round; odd rounds run them in reverse order so neither side always goes first."""
    names = list(sides)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            results[name].append(sides[name]())
    return results


# -- CPU accounting ----------------------------------------------------------------------------


def process_cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU of a process so far (this one when pid is None); None if unreadable."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


ComputeReader = Callable[[], dict[str, float] | None]
"""The server's compute thread: busy seconds per kind so far (None when the server cannot say)."""


@dataclass
class CpuMeter:
    """Wall time and the CPU this process and the server spent between `start` and `stop`, and, given a
    `compute` reader, the seconds the server's compute thread was busy, per kind of work."""

    server_pid: int | None
    compute: ComputeReader | None = None
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float | None = None
    compute_s: dict[str, float] | None = None  # per kind, and their sum as "compute"
    _marks: tuple[float, float, float | None] = field(default=(0.0, 0.0, None), repr=False)
    _compute_mark: dict[str, float] | None = field(default=None, repr=False)

    def start(self) -> None:
        server = process_cpu_seconds(self.server_pid) if self.server_pid is not None else None
        self._compute_mark = self.compute() if self.compute is not None else None
        self._marks = (time.perf_counter(), time.process_time(), server)

    def stop(self) -> None:
        wall, client, server = self._marks
        self.wall += time.perf_counter() - wall
        self.client_cpu += time.process_time() - client
        now = process_cpu_seconds(self.server_pid) if self.server_pid is not None else None
        if server is not None and now is not None:
            self.server_cpu = (self.server_cpu or 0.0) + now - server
        after = self.compute() if self.compute is not None else None
        if self._compute_mark is not None and after is not None:
            from server_stub.compute_time import compute_difference

            spent = compute_difference(self._compute_mark, after)
            self.compute_s = {k: (self.compute_s or {}).get(k, 0.0) + v for k, v in spent.items()}


def http_compute_reader(url: str, api_key: str | None = None) -> ComputeReader:
    """Reads a server's GET /api/v1/compute_time; None from a server without that route."""
    import httpx

    from cookbook.client import types

    headers = {"X-API-Key": api_key} if api_key else {}

    def read() -> dict[str, float] | None:
        try:
            answer = httpx.get(f"{url}/api/v1/compute_time", headers=headers, timeout=30)
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        return types.ComputeTimeResponse.model_validate_json(answer.content).seconds

    return read


# -- output ------------------------------------------------------------------------------------


class Table:
    """A plain-text table: a title, a header row, and left-aligned cells."""

    def __init__(self, title: str, columns: Sequence[str], note: str = ""):
        self.title = title
        self.columns = list(columns)
        self.rows: list[list[str]] = []
        self.note = note

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))]

        def line(cells: list[str]) -> str:
            return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

        parts = [self.title, line(self.columns), line(["-" * w for w in widths]), *map(line, self.rows)]
        if self.note:
            parts.append(self.note)
        return "\n".join(parts)


@dataclass
class BenchReport:
    """What one bench produced: tables to print and the same numbers as JSON-ready data."""

    name: str
    tables: list[Table]
    data: dict[str, Any]

    def render(self) -> str:
        return "\n\n".join(table.render() for table in self.tables)


def machine_info(settings: BenchSettings) -> dict[str, Any]:
    import torch

    return {
        "torch_threads": settings.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "quick": settings.quick,
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


# -- the server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerHandle:
    """Where the benchmarked server listens, and its pid when we started it (for CPU accounting)."""

    url: str
    pid: int | None


@contextmanager
def bench_server(settings: BenchSettings) -> Iterator[ServerHandle]:
    """A fresh server child on a free port with the bench's thread settings, or the one given by URL."""
    if settings.base_url is not None:
        yield ServerHandle(settings.base_url, None)
        return
    from cookbook.client.local_server import LocalServer

    threads = str(settings.threads)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as storage:
        server = LocalServer(storage, env=env, extra_args=["--log-level", "warning", *settings.server_args])
        with server:
            yield ServerHandle(server.url, server.pid)


def print_and_save(settings: BenchSettings, report: BenchReport) -> int:
    """Print a bench's tables and, with `--json`, save its numbers beside the machine's."""
    print(report.render(), flush=True)
    if settings.json_path is not None:
        write_json(settings.json_path, {"machine": machine_info(settings), report.name: report.data})
    return 0


def run_cli(
    description: str,
    run: Callable[[BenchSettings, ServerHandle], BenchReport],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the common arguments, run one bench against a server, print its tables, save JSON."""
    settings = settings_from_args(build_parser(description).parse_args(argv))
    use_threads(settings.threads)
    with bench_server(settings) as server:
        report = run(settings, server)
    return print_and_save(settings, report)


def run_in_process_cli(
    description: str, run: Callable[[BenchSettings], BenchReport], argv: Sequence[str] | None = None
) -> int:
    """`run_cli` for a bench that calls the engine in this process (no server)."""
    settings = settings_from_args(build_parser(description).parse_args(argv))
    use_threads(settings.threads)
    return print_and_save(settings, run(settings))
