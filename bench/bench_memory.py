"""The server's peak memory on a judge-like workload, for several `--max-pass-tokens` budgets.

    python -m bench.bench_memory                          # budgets: one piece (1000000), 2048 (default), 256
    python -m bench.bench_memory --before-root DIR        # also a server run from another checkout (no flag)

The workload is what the preference model sends during an RL step: 192 concurrent requests, each a
judge prompt plus its label token with prompt logprobs and the top 20 at every position and one
new token (prompt lengths drawn like the HH judge prompts: median 221, 90th percentile 458, capped
at the built-in model's context), then one forward_backward of 64 such sequences on a LoRA (the
preference model's training). Each budget gets a fresh server; the figures are the server process's
resident memory (`/proc/<pid>/status`): after start-up and a warm-up request, and its high-water
mark after the judging and after the training pass. Memory, not speed: one round is enough.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.server_memory import memory_kib

JUDGMENTS = 192
TRAINING_ROWS = 64
TOPK = 20
MEDIAN_LENGTH, P90_LENGTH = 221, 458
ONE_PIECE = 1_000_000  # a budget no batch reaches: every pass in one piece
BUDGETS = (ONE_PIECE, 2048, 256)
Z90 = 1.2816  # the standard normal's 90th percentile


def judge_lengths(count: int, max_length: int, rng: random.Random) -> list[int]:
    """Lognormal prompt lengths with the HH judge prompts' median and 90th percentile, capped."""
    sigma = math.log(P90_LENGTH / MEDIAN_LENGTH) / Z90
    return [
        min(max_length, max(8, round(rng.lognormvariate(math.log(MEDIAN_LENGTH), sigma))))
        for _ in range(count)
    ]


async def _workload(url: str, pid: int, lengths: list[int], vocab: int) -> dict[str, int]:
    from cookbook.client import connect, types

    rng = random.Random(1)
    prompts = [[rng.randrange(1, vocab) for _ in range(n)] for n in lengths]
    service = connect(url)
    try:
        sampler = await service.create_sampling_client_async(base_model=common.BASE_MODEL)
        params = types.SamplingParams(max_tokens=1, temperature=0.0)

        async def judge(prompt: list[int]) -> None:
            await sampler.sample_async(
                types.ModelInput.from_ints(prompt),
                num_samples=1,
                sampling_params=params,
                include_prompt_logprobs=True,
                topk_prompt_logprobs=TOPK,
            )

        await judge(prompts[0][:16])  # warm-up: everything loaded, nothing large yet
        figures = {"idle_rss": memory_kib(pid)["VmRSS"]}
        await asyncio.gather(*(judge(p) for p in prompts))
        figures["judging_peak"] = memory_kib(pid)["VmHWM"]
        trainer = await service.create_lora_training_client_async(common.BASE_MODEL, rank=8)
        data = [
            types.Datum(
                model_input=types.ModelInput.from_ints(p[:-1]),
                loss_fn_inputs={"target_tokens": p[1:], "weights": [1.0] * (len(p) - 1)},
            )
            for p in prompts[:TRAINING_ROWS]
        ]
        await (await trainer.forward_backward_async(data, "cross_entropy"))
        figures["training_peak"] = memory_kib(pid)["VmHWM"]
        return figures
    finally:
        await service.close_async()


def measure(
    budget: int | None, root: Path | None, settings: common.BenchSettings, lengths: list[int]
) -> dict[str, int]:
    """One fresh server (from `root` when given, with no budget flag) through the workload."""
    from cookbook.client.local_server import LocalServer

    threads = str(settings.threads)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if root is not None:
        env["PYTHONPATH"] = str(root)
    flags = [] if budget is None else ["--max-pass-tokens", str(budget)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as storage,
        LocalServer(storage, env=env, extra_args=["--log-level", "warning", *flags]) as server,
    ):
        assert server.pid is not None
        return asyncio.run(_workload(server.url, server.pid, lengths, common.vocab_size()))


def engine_probe(budget: int | None, topk: int, rows: int, width: int) -> None:
    """In this process (a fresh one): the engine alone judging `rows` prompts of `width` tokens; prints
    the rise of the process's peak RSS over a warmed-up engine, in MiB (no web layer, no encoding)."""
    import inspect
    import resource

    from cookbook.client import types
    from server_stub.engine import SampleJob
    from server_stub.torch_engine import TorchEngine

    # An older checkout (--before-root) has no budget.
    accepts_budget = "max_pass_tokens" in inspect.signature(TorchEngine).parameters
    options = {"max_pass_tokens": budget} if budget is not None and accepts_budget else {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as storage:
        engine = TorchEngine(Path(storage), device="cpu", **options)
        sampler = engine.create_sampler(common.BASE_MODEL, None).sampler_id
        rng = random.Random(0)
        params = types.SamplingParams(max_tokens=1, temperature=0.0)
        jobs = [
            SampleJob(
                sampler,
                types.SampleRequest(
                    prompt=types.ModelInput.from_ints(
                        [rng.randrange(1, common.vocab_size()) for _ in range(width)]
                    ),
                    sampling_params=params,
                    prompt_logprobs=True,
                    topk_prompt_logprobs=topk,
                ),
            )
            for _ in range(rows)
        ]
        engine.sample(jobs[:1])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        engine.sample(jobs)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


def probe(budget: int | None, root: Path | None, topk: int, rows: int, width: int) -> float:
    """`engine_probe` in a fresh interpreter (from `root` when given)."""
    import subprocess

    # The server packages from `root` come first; this bench module comes from this checkout.
    path = [str(root), os.getcwd()] if root is not None else [os.getcwd()]
    code = (
        f"import sys; sys.path[:0] = {path!r}; from bench.bench_memory import engine_probe; "
        f"engine_probe({budget!r}, {topk}, {rows}, {width})"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.build_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets", default=",".join(map(str, BUDGETS)), help="comma-separated --max-pass-tokens values"
    )
    parser.add_argument(
        "--before-root",
        type=Path,
        default=None,
        help="also run the server from this checkout, without the flag",
    )
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    if settings.base_url is not None:
        raise SystemExit("bench_memory starts its own servers (one per budget): --base-url does not apply")
    from server_stub.models.tiny_llama import TINY_LLAMA_CONTEXT

    count = 24 if settings.quick else JUDGMENTS
    lengths = judge_lengths(count, TINY_LLAMA_CONTEXT - 1, random.Random(0))
    runs: list[tuple[str, int | None, Path | None]] = [
        (f"budget {b}", b, None) for b in map(int, args.budgets.split(","))
    ]
    if args.before_root is not None:
        runs.insert(0, (f"before ({args.before_root.name})", None, args.before_root.resolve()))
    table = common.Table(
        f"server memory (MiB): {count} judgements with prompt logprobs + top-{TOPK}, then a LoRA "
        f"forward_backward of {min(count, TRAINING_ROWS)} of them",
        ["server", "idle RSS", "peak judging", "peak training", "judging - idle"],
        note=f"prompt lengths median {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)}, "
        f"sum {sum(lengths)} tokens; vocabulary {common.vocab_size()}; peak = VmHWM of the server process",
    )
    data: dict[str, Any] = {"lengths": lengths, "runs": []}
    for label, budget, root in runs:
        figures = measure(budget, root, settings, lengths)
        mib = {k: v / 1024 for k, v in figures.items()}
        table.add(
            label,
            f"{mib['idle_rss']:.0f}",
            f"{mib['judging_peak']:.0f}",
            f"{mib['training_peak']:.0f}",
            f"{mib['judging_peak'] - mib['idle_rss']:.0f}",
        )
        data["runs"].append({"server": label, "budget": budget, **figures})
        print(f"{label}: {mib}", file=sys.stderr, flush=True)
    rows, width = (24, 128) if settings.quick else (JUDGMENTS, TINY_LLAMA_CONTEXT - 1)
    engine_table = common.Table(
        f"engine alone (MiB of peak RSS over a warm engine): {rows} judgements of {width} tokens each, in one batch",
        ["engine", "prompt logprobs", f"+ top-{TOPK} at every position"],
        note="in a fresh process per cell; no web layer: the top-k column adds the Python result lists",
    )
    data["engine"] = []
    for label, budget, root in runs:
        cells = {f"topk_{k}": probe(budget, root, k, rows, width) for k in (0, TOPK)}
        engine_table.add(label, f"{cells['topk_0']:.0f}", f"{cells[f'topk_{TOPK}']:.0f}")
        data["engine"].append({"engine": label, "budget": budget, **cells})
    report = common.BenchReport("memory", [table, engine_table], data)
    print(report.render(), flush=True)
    if settings.json_path is not None:
        common.write_json(settings.json_path, {"machine": common.machine_info(settings), "memory": data})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
