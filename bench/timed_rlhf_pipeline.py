"""The RLHF pipeline, each stage also costed in CPU seconds of this process and of the server process.

    python -m bench.timed_rlhf_pipeline key=value ...   # the pipeline's own arguments

`bench_rlhf_pipeline` runs this in a fresh process for every seed. On a shared machine wall time
says more about the neighbours than about the pipeline, so each stage records the CPU seconds the
client spent and, for the bundled server this process starts, the server's: their sum is the
stage's real cost. The server is started (and timed) before the first stage, so that no stage is
charged for it; everything lands in the pipeline's `pipeline_summary.json`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import CpuMeter
from cookbook.model_config import recipe_defaults
from cookbook.recipes.preference.rlhf import rlhf_pipeline
from cookbook.recipes.renamed_keys import recipe_entrypoint
from cookbook.utils.jsonable import write_json


def cpu_clock(server_pid: int | None) -> rlhf_pipeline.StageClock:
    """A stage clock reporting wall time, client CPU, server CPU (None when unknown) and their sum."""

    def start() -> Callable[[], dict[str, Any]]:
        meter = CpuMeter(server_pid)
        meter.start()

        def stop() -> dict[str, Any]:
            meter.stop()
            total = None if meter.server_cpu is None else meter.client_cpu + meter.server_cpu
            return {
                "wall_s": meter.wall,
                "client_cpu_s": meter.client_cpu,
                "server_cpu_s": meter.server_cpu,
                "total_cpu_s": total,
            }

        return stop

    return start


def main(config: rlhf_pipeline.PipelineConfig) -> dict[str, Any]:
    server_pid, startup_s = None, 0.0
    if config.base_url is None:  # the bench clears $COOKBOOK_BASE_URL: the pipeline uses this server
        from cookbook.client.local_server import shared_local_server

        start = time.perf_counter()
        server_pid = shared_local_server().pid
        startup_s = time.perf_counter() - start
    summary = rlhf_pipeline.main(config, clock=cpu_clock(server_pid))
    summary["server_startup_s"] = startup_s
    write_json(Path(config.log_path) / rlhf_pipeline.SUMMARY_FILE, summary)
    return summary


if __name__ == "__main__":
    recipe_entrypoint(main, rlhf_pipeline.RENAMED_KEYS, functools.partial(recipe_defaults, "rlhf_pipeline"))
