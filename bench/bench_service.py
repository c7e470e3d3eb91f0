"""Every bench in one run against one server: training, sampling and the HTTP floor, then a summary.

    python -m bench.bench_service [--quick] [--threads N] [--rounds N] [--json PATH]
    python bench/bench_service.py ...

Takes a few minutes on a 2-core CPU (`--quick`: well under one, for smoke tests).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/bench_service.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_overhead, bench_sampling, bench_training, common

BENCHES = (bench_training.run, bench_sampling.run, bench_overhead.run)


def summary(reports: list[common.BenchReport]) -> common.Table:
    """One line per comparison: the ratio against its in-process baseline."""
    data = {report.name: report.data for report in reports}
    table = common.Table(
        "Summary: service vs in-process baselines (median [range] of per-round ratios)",
        ["comparison", "ratio"],
        note="training/sampling: throughput ratio (1.0 = parity); concurrency: time ratio "
        "(1.0 = no per-request cost).",
    )
    for case in data.get("training", {}).get("cases", []):
        c = case["case"]
        table.add(
            f"training {c['model']} {c['batch']}x{c['length']} {c['loss_fn']}: HTTP / in-process tok/s",
            common.Spread.from_dict(case["throughput_ratio_http_over_in_process"]).text(2),
        )
    sampling = data.get("sampling", {})
    for case in sampling.get("throughput", []):
        table.add(
            f"sampling B={case['prompts']} new={case['new_tokens']}: server / HF generate tok/s",
            common.Spread.from_dict(case["throughput_ratio_server_over_hf"]).text(2),
        )
    for case in sampling.get("concurrency", []):
        table.add(
            f"sampling {case['samples']} concurrent 1-sample requests / one {case['samples']}-sample "
            "request: time",
            common.Spread.from_dict(case["time_ratio_concurrent_over_one"]).text(2),
        )
    overhead = data.get("overhead")
    if overhead is not None:
        table.add(
            "forward_backward 1x8 round trip: HTTP - in-process ms",
            common.number(overhead["http_minus_in_process_ms"]),
        )
    return table


def run_all(settings: common.BenchSettings, server: common.ServerHandle) -> list[common.BenchReport]:
    reports = []
    for bench in BENCHES:
        started = time.perf_counter()
        report = bench(settings, server)
        report.data["seconds"] = time.perf_counter() - started
        print(report.render() + "\n", flush=True)
        reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    settings = common.settings_from_args(common.build_parser(__doc__.splitlines()[0]).parse_args(argv))
    common.use_threads(settings.threads)
    started = time.perf_counter()
    with common.bench_server(settings) as server:
        reports = run_all(settings, server)
    print(summary(reports).render(), flush=True)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s, {settings.threads} torch threads on each side", flush=True)
    if settings.json_path is not None:
        payload: dict[str, Any] = {"machine": common.machine_info(settings), "total_seconds": total}
        payload.update({report.name: report.data for report in reports})
        common.write_json(settings.json_path, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
