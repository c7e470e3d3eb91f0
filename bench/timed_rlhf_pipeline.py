"""The RLHF pipeline, each stage also costed in CPU seconds and in the server's compute time.

    python -m bench.timed_rlhf_pipeline key=value ...                      # over HTTP, the bundled server
    python -m bench.timed_rlhf_pipeline base_url=inprocess:// key=value ... # the same engine in this process

`bench_rlhf_pipeline` runs this in a fresh process for every seed. On a shared machine wall time
says more about the neighbours than about the pipeline, so each stage records the CPU seconds the
client spent and, for the bundled server this process starts, the server's: their sum is the
stage's real cost. Each stage also records how long the server's compute thread was busy, per kind
of work (training, sampling, other), read from the server (GET /api/v1/compute_time) or, in
process, from its scheduler directly; the rest of the stage's wall time the compute thread waited.
The server is launched first thing, as the pipeline does, and waited for (timed) before the first
stage, so that no stage is charged for it; everything lands in the pipeline's `pipeline_summary.json`.
"""

from __future__ import annotations

import sys

from cookbook.client.local_server import prestart_shared_local_server

if __name__ == "__main__":  # as the pipeline does: the server starts up beside the imports below
    prestart_shared_local_server(sys.argv[1:])

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ComputeReader, CpuMeter, http_compute_reader
from cookbook.client.connection import IN_PROCESS_PREFIX, is_in_process, requested_base_url
from cookbook.client.http.settings import resolve_api_key, resolve_base_url
from cookbook.model_config import recipe_defaults
from cookbook.recipes.preference.rlhf import rlhf_pipeline
from cookbook.recipes.renamed_keys import recipe_entrypoint
from cookbook.utils.jsonable import write_json


def cpu_clock(
    server_pid: int | None, compute: ComputeReader | None = None, in_process: bool = False
) -> rlhf_pipeline.StageClock:
    """A stage clock reporting wall time, client CPU, server CPU (None when unknown), their sum, and the
    server's busy compute seconds per kind with the wall time left over (`waiting_s`) when `compute` reads them.
    `in_process`: the engine runs in this process, so the client's CPU is the total."""

    def start() -> Callable[[], dict[str, Any]]:
        meter = CpuMeter(server_pid, compute)
        meter.start()

        def stop() -> dict[str, Any]:
            meter.stop()
            total = meter.client_cpu if in_process else None
            if meter.server_cpu is not None:
                total = meter.client_cpu + meter.server_cpu
            cost: dict[str, Any] = {
                "wall_s": meter.wall,
                "client_cpu_s": meter.client_cpu,
                "server_cpu_s": meter.server_cpu,
                "total_cpu_s": total,
            }
            if meter.compute_s is not None:
                cost["compute_s"] = meter.compute_s
                cost["waiting_s"] = meter.wall - meter.compute_s["compute"]
            return cost

        return stop

    return start


def start_server(base_url: str | None) -> tuple[rlhf_pipeline.StageClock, float]:
    """The server the stages will use, started now (timed), and the clock that costs each stage on it."""
    start = time.perf_counter()
    if is_in_process(base_url):
        from cookbook.client.in_process import shared_in_process_server

        server = shared_in_process_server(requested_base_url(base_url) or IN_PROCESS_PREFIX)
        return cpu_clock(None, server.compute_time.snapshot, in_process=True), time.perf_counter() - start
    url, server_pid = resolve_base_url(base_url), None
    if url is None:  # the bench clears $COOKBOOK_BASE_URL: the pipeline uses the bundled server
        from cookbook.client.local_server import shared_local_server

        local = shared_local_server()
        url, server_pid = local.url, local.pid
    reader = http_compute_reader(url, resolve_api_key())
    return cpu_clock(server_pid, reader), time.perf_counter() - start


def main(config: rlhf_pipeline.PipelineConfig) -> dict[str, Any]:
    clock, startup_s = start_server(config.base_url)
    summary = rlhf_pipeline.main(config, clock=clock)
    summary["server_startup_s"] = startup_s
    write_json(Path(config.log_path) / rlhf_pipeline.SUMMARY_FILE, summary)
    return summary


if __name__ == "__main__":
    recipe_entrypoint(main, rlhf_pipeline.RENAMED_KEYS, functools.partial(recipe_defaults, "rlhf_pipeline"))
