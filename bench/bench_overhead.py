"""The HTTP overhead floor: what one tiny call costs through the client, beyond its computation.

Three sequential round trips, each repeated: `get_info` (one POST answered by the web layer, no
compute thread: the client + HTTP + routing floor), `forward_backward` on 1 datum of 8 tokens
(submit + retrieve_future through the scheduler and the engine) and, as its baseline, the same
forward + backward in-process. CPU per call is measured for this process (the client) and for
the server process; the server's CPU minus the in-process step's CPU is its web layer's share.

    python -m bench.bench_overhead [--quick] [--threads N] [--json PATH]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/bench_overhead.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # sets the OpenMP wait policy before anything imports torch
from bench.bench_training import InProcessTrainer, SyntheticBatch
from cookbook.client import types

TOKENS = 8


def timed_calls(call: Callable[[], object], repeats: int, server_pid: int | None) -> dict[str, Any]:
    """Wall time per call (each call timed alone) and CPU per call on both sides."""
    for _ in range(max(2, repeats // 10)):  # warm up connections and caches
        call()
    meter = common.CpuMeter(server_pid)
    times = []
    meter.start()
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    meter.stop()
    return {
        "wall_ms": common.Spread.of(times).as_dict(),
        "p10_ms": _percentile(times, 10),
        "p90_ms": _percentile(times, 90),
        "client_cpu_ms": 1e3 * meter.client_cpu / repeats,
        "server_cpu_ms": None if meter.server_cpu is None else 1e3 * meter.server_cpu / repeats,
        "calls": repeats,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def forward_backward_in_process(trainer: InProcessTrainer, batch: SyntheticBatch) -> Callable[[], object]:
    """Forward + backward of the cross_entropy loss, no optimizer step (the HTTP call has none either)."""
    import torch.nn.functional as F

    data = trainer.tensors(batch)

    def step() -> object:
        logits = trainer.model(input_ids=data["inputs"], use_cache=False).logits
        logprobs = -F.cross_entropy(logits.flatten(0, 1), data["targets"].flatten(), reduction="none")
        (-(data["weights"].flatten() * logprobs).sum()).backward()
        return logprobs.detach().cpu()

    return step


def run(settings: common.BenchSettings, server: common.ServerHandle) -> common.BenchReport:
    from cookbook.client import connect

    repeats = 5 if settings.quick else 60
    service = connect(server.url)
    client = service.create_training_client(common.BASE_MODEL, types.LoraConfig(rank=0))
    batch = SyntheticBatch.make(1, TOKENS, common.vocab_size())
    datums = batch.datums("cross_entropy")
    trainer = InProcessTrainer(lora_rank=0)
    calls = {
        "get_info (HTTP, no compute)": lambda: client.get_info(),
        f"forward_backward 1x{TOKENS} (HTTP)": lambda: client.forward_backward(
            datums, "cross_entropy"
        ).result(),
        f"forward_backward 1x{TOKENS} (in-process)": forward_backward_in_process(trainer, batch),
    }
    results = {
        name: timed_calls(call, repeats, None if "in-process" in name else server.pid)
        for name, call in calls.items()
    }
    service.close()
    http, local = (results[f"forward_backward 1x{TOKENS} ({side})"] for side in ("HTTP", "in-process"))
    overhead = http["wall_ms"]["median"] - local["wall_ms"]["median"]
    table = common.Table(
        f"HTTP overhead floor: sequential round trips through the client ({settings.threads} torch threads, "
        f"{repeats} calls each)",
        ["call", "wall ms median [min-max]", "p10-p90 ms", "this process CPU ms/call", "server CPU ms/call"],
        note=f"forward_backward over HTTP costs {common.number(overhead)} ms more than in-process per call "
        "(median difference). This process is the client, or the compute itself for the in-process row.",
    )
    for name, r in results.items():
        server_cpu = r["server_cpu_ms"]
        table.add(
            name,
            common.Spread.from_dict(r["wall_ms"]).text(),
            f"{common.number(r['p10_ms'])}-{common.number(r['p90_ms'])}",
            common.number(r["client_cpu_ms"]),
            "-" if "in-process" in name else "n/a" if server_cpu is None else common.number(server_cpu),
        )
    return common.BenchReport("overhead", [table], {"calls": results, "http_minus_in_process_ms": overhead})


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
