"""The RLHF pipeline on a real model: SmolLM2-135M-Instruct (its GGUF) over the bundled data.

    python -m bench.bench_rlhf_real                 # the whole pipeline with the pretrained-model defaults
    python -m bench.bench_rlhf_real --quick         # a few steps of every stage: proves it runs, costs each step
    python -m bench.bench_rlhf_real --hh            # the whole pipeline on the real HH split: memory, PM accuracy
    python -m bench.bench_rlhf_real -- rl.steps=24 rl.optimizer.learning_rate=1e-4   # other settings

A server is started serving the GGUF as "smollm2" (a name that says nothing: the chat format comes
from the served template) in fp32 on the CPU, and the pipeline runs against it with the defaults
`cookbook.model_config.RECIPE_DEFAULTS` gives a pretrained model. It prints each stage's curve
(SFT `test/nll`; PM `test/accuracy`, `test/accuracy/correctness`; RL `test/win_rate`,
`test/gold_win_rate` and their greedy twins), the targets, and what each stage cost: wall and CPU
seconds (client + server) per stage, and per training step. From the per-step costs it estimates
how long the full default run takes (on the bundled data; so `--quick` sizes the real run).

Every mode also prints the server's memory (`bench/server_memory.py`): its resident set idle with the
base model loaded, with one LoRA client (the policy), with all three (policy, reference, preference
model: three adapters on the one shared base), and the peak of each stage, with a PASS/FAIL line for
the 4 GiB target. `--hh` runs the whole pipeline sized for that measurement on the real HH-RLHF split
beside the project (`../shared/data/`): a few SFT steps (on the bundled chats: SFT reads the no_robots
schema, the HH file is comparisons), the preference model on HH comparisons of every length (judge
prompts up to 1,146 tokens) with its held-out accuracy on 100 comparisons in both orders at the end,
and two RL steps at the full default judging fan-out (16 prompts x 4 answers, every ordered pair:
192 judgements a step), with the preference-model win rate at the start and the end (HH has no gold
rule).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench.common  # noqa: F401  (process settings before torch loads)
from bench.server_memory import KIB_PER_MIB, PeakWatch, memory_clock
from bench.smollm2 import smollm2_gguf
from bench.timed_rlhf_pipeline import cpu_clock
from cookbook.client import connect, types
from cookbook.client.abstract import TrainingClient
from cookbook.client.http.training import HttpTrainingClient
from cookbook.client.local_server import LocalServer
from cookbook.client.loop import background_loop
from cookbook.model_config import DEFAULT_LORA_RANK, recipe_defaults
from cookbook.recipes.preference.rlhf import rlhf_pipeline
from cookbook.recipes.preference.rlhf.report import stage_curves
from cookbook.recipes.renamed_keys import recipe_entrypoint

SERVED_NAME = "smollm2"
REPO_ROOT = Path(__file__).resolve().parents[1]
HH_SPLIT = REPO_ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
WALL_LIMIT_S = 40 * 60
CURVES: dict[str, tuple[str, ...]] = {
    "sft": ("test/nll",),
    "rm": ("test/accuracy", "test/accuracy/correctness"),
    "rl": ("test/win_rate", "test/greedy_win_rate", "test/gold_win_rate", "test/greedy_gold_win_rate"),
}
QUICK_ARGS: tuple[str, ...] = (
    "sft.steps=3",
    "sft.eval_every=3",
    "rm.steps=3",
    "rm.eval_every=3",
    "rl.steps=2",
    "rl.eval_every=2",
    "rl.eval_comparisons=4",
    "comparison_test_size=8",
)
EVAL_TIME_KEYS = ("time/evals", "time/eval")
HH_ARGS: tuple[str, ...] = (
    f"comparison_dataset={HH_SPLIT}",
    "sft.steps=2",
    "sft.eval_every=0",  # evaluations at the end only: the stage is here for the memory it holds
    "rm.max_length=1280",  # no HH comparison is cut: the longest judge prompt is 1,146 tokens
    "rm.steps=6",
    "rm.eval_every=0",
    "comparison_test_size=100",
    "rl.steps=2",
    "rl.batch_size=16",  # the full default fan-out: 16 prompts x 4 answers, 192 judgements a step
    "rl.group_size=4",
    "rl.eval_every=0",
    "rl.eval_comparisons=8",
    "rl.greedy_eval=False",
)
HH_QUICK_ARGS: tuple[str, ...] = (
    "sft.steps=1",
    "rm.steps=1",
    "comparison_test_size=8",
    "rl.steps=1",
    "rl.batch_size=2",
    "rl.eval_comparisons=2",
)
PEAK_TARGET_MIB = 4 * 1024
BASE_LOAD_TIMEOUT_S = 900.0
ADAPTER_ROLES = ("policy", "reference", "preference model")
PROBE_TOKENS = tuple(
    range(100, 132)
)  # a short sequence of ordinary tokens: loads weights, holds no activations


def _training_steps(stage_dir: Path) -> list[dict[str, Any]]:
    """The stage's metrics.jsonl rows (one per step)."""
    path = stage_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _eval_s(row: dict[str, Any]) -> float | None:
    """Seconds a step spent evaluating (the supervised loop logs `time/evals`, the RL loop `time/eval`)."""
    spent = [row[key] for key in EVAL_TIME_KEYS if key in row]
    return sum(spent) if spent else None


def step_costs(stage_dir: Path) -> dict[str, float]:
    """Median wall seconds of a training step (its evaluations left out) and of one evaluation."""
    rows = _training_steps(stage_dir)
    steps = [r["time/total"] - (_eval_s(r) or 0.0) for r in rows if "time/total" in r]
    evals = [spent for spent in map(_eval_s, rows) if spent is not None]
    costs = {"steps": float(len(steps))}
    if steps:
        costs["step_s"] = statistics.median(steps)
    if evals:
        costs["eval_s"] = statistics.median(evals)
    return costs


def print_curves(log_path: Path, stages: Sequence[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    found: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for stage in stages:
        curves = stage_curves(log_path / stage)
        for key in CURVES[stage]:
            if key not in curves:
                continue
            steps, values = curves[key]
            found.setdefault(stage, {})[key] = list(zip(steps, values, strict=True))
            points = "  ".join(f"{s}:{v:.3f}" for s, v in zip(steps, values, strict=True))
            print(f"  {stage:>3} {key:<28} {points}")
    return found


def targets(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> list[tuple[str, float | None, bool]]:
    def values(stage: str, key: str) -> list[float]:
        return [v for _, v in curves.get(stage, {}).get(key, [])]

    accuracy, gold = values("rm", "test/accuracy"), values("rl", "test/gold_win_rate")
    rows: list[tuple[str, float | None, bool]] = [
        (
            "PM test/accuracy last >= 0.85",
            accuracy[-1] if accuracy else None,
            bool(accuracy and accuracy[-1] >= 0.85),
        ),
        (
            "RL test/gold_win_rate rise >= +0.10",
            gold[-1] - gold[0] if gold else None,
            bool(gold and gold[-1] - gold[0] >= 0.10),
        ),
        (
            "RL test/gold_win_rate min - first >= 0",
            min(gold) - gold[0] if gold else None,
            bool(gold and min(gold) >= gold[0]),
        ),
    ]
    return rows


def _settings(args: Sequence[str]) -> dict[str, float]:
    return {key: float(value) for key, _, value in (arg.partition("=") for arg in args)}


def estimate_full_run_s(log_path: Path, full: dict[str, Any], ran: Sequence[str] = ()) -> dict[str, float]:
    """Seconds the default run (`full`) would take at the per-step costs of the run logged in `log_path`,
    which ran with `ran` over the defaults: evaluations are priced per comparison they judge."""
    settings = {**full, **_settings(ran)}
    test_size = {"full": full["comparison_test_size"], "ran": settings["comparison_test_size"]}
    eval_scale = {
        "sft": 1.0,  # the whole chat test split either way
        "rm": test_size["full"] / test_size["ran"],
        "rl": min(full["rl.eval_comparisons"], test_size["full"])
        / min(settings["rl.eval_comparisons"], test_size["ran"]),
    }
    estimate: dict[str, float] = {}
    for stage in ("sft", "rm", "rl"):
        costs = step_costs(log_path / stage)
        if "step_s" in costs:
            steps, evals = full[f"{stage}.steps"], full[f"{stage}.steps"] // full[f"{stage}.eval_every"] + 1
            estimate[stage] = steps * costs["step_s"] + evals * costs.get("eval_s", 0.0) * eval_scale[stage]
    return estimate


def run_pipeline(
    server: LocalServer, log_path: Path, extra: Sequence[str], watch: PeakWatch | None = None
) -> dict[str, Any]:
    argv = [f"base_url={server.url}", f"model_name={SERVED_NAME}", f"log_path={log_path}", *extra]
    print("[bench] rlhf_pipeline " + " ".join(argv), flush=True)
    clock = cpu_clock(server.pid)
    if watch is not None:
        clock = memory_clock(clock, watch)

    def main(config: rlhf_pipeline.PipelineConfig) -> dict[str, Any]:
        return rlhf_pipeline.main(config, clock=clock)

    return recipe_entrypoint(
        main, rlhf_pipeline.RENAMED_KEYS, functools.partial(recipe_defaults, "rlhf_pipeline"), argv=argv
    )


async def _unload(client: TrainingClient) -> None:
    """Free a training model now (the SDK has no call for it; an idle session's models go after minutes)."""
    assert isinstance(client, HttpTrainingClient)
    transport = client._transport

    async def unload() -> None:
        request = types.UnloadModelRequest(model_id=client.model_id)
        await transport.retrieve(await transport.submit("/unload_model", request), types.UnloadModelResponse)

    await background_loop().run_async(unload())  # the transport lives on the SDK's loop


async def adapter_memory(url: str, watch: PeakWatch, rank: int = DEFAULT_LORA_RANK) -> dict[str, float]:
    """The server's RSS (MiB) at start, with the base loaded and idle, then with each of the RL stage's
    three LoRA clients added (policy, reference, preference model: each one training step and a sampler
    snapshot that samples), and after they are unloaded again, so the pipeline starts from the base alone."""
    prompt = types.ModelInput.from_ints(list(PROBE_TOKENS))
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(list(PROBE_TOKENS[:-1])),
        loss_fn_inputs={"target_tokens": list(PROBE_TOKENS[1:]), "weights": [1.0] * (len(PROBE_TOKENS) - 1)},
    )
    greedy_token = types.SamplingParams(max_tokens=1, temperature=0.0)
    figures = {"server started, no model loaded": watch.sample()}
    # The first call loads the base (dequantising the GGUF), which takes minutes on a loaded CPU.
    service = connect(url, timeout=BASE_LOAD_TIMEOUT_S, unresponsive_after=BASE_LOAD_TIMEOUT_S)
    try:
        base = await service.create_sampling_client_async(base_model=SERVED_NAME)
        await base.sample_async(prompt, num_samples=1, sampling_params=greedy_token)
        figures["base loaded, idle"] = watch.sample()
        clients: list[TrainingClient] = []
        for role in ADAPTER_ROLES:
            client = await service.create_lora_training_client_async(SERVED_NAME, rank=rank)
            await (await client.forward_backward_async([datum], "cross_entropy"))
            await (await client.optim_step_async(types.AdamParams(learning_rate=1e-4)))
            sampler = await client.save_weights_and_get_sampling_client_async()
            await sampler.sample_async(prompt, num_samples=1, sampling_params=greedy_token)
            clients.append(client)
            figures[f"+ {role} LoRA ({len(clients)} adapter{'s' * (len(clients) > 1)})"] = watch.sample()
        for client in clients:
            await _unload(client)
        figures["adapters unloaded (the pipeline starts here)"] = watch.sample()
    finally:
        await service.close_async()
    return {label: kib / KIB_PER_MIB for label, kib in figures.items()}


def print_memory(
    adapters: dict[str, float], stages: dict[str, dict[str, Any]], lifetime_peak_mib: float, mark_resets: bool
) -> dict[str, Any]:
    """The memory table and the target line; returns the same figures."""
    how = "VmHWM reset at each stage's start" if mark_resets else "VmRSS sampled every 100 ms"
    print(f"\n[bench] server memory, MiB (resident set of the server process; stage peak: {how}):")
    for label, mib in adapters.items():
        print(f"  {label:<48} {mib:7.0f}")
    peaks = {}
    for stage, spent in stages.items():
        if "server_peak_rss_mib" not in spent:
            continue
        peaks[stage] = spent["server_peak_rss_mib"]
        load = ", ".join(f"{x:.1f}" for x in spent.get("load_average", ()))
        print(
            f"  {stage:>3} stage: start {spent['server_rss_start_mib']:6.0f}  peak {peaks[stage]:6.0f}"
            f"  end {spent['server_rss_end_mib']:6.0f}  (load average at its end {load})"
        )
    print(
        f"  {'whole run (VmHWM since the last reset)' if mark_resets else 'whole life (VmHWM)':<48} {lifetime_peak_mib:7.0f}"
    )
    peak = max([*peaks.values(), *adapters.values()], default=float("nan"))
    passed = peak <= PEAK_TARGET_MIB
    print(f"  {'PASS' if passed else 'FAIL'}  peak {peak:.0f} MiB <= {PEAK_TARGET_MIB} MiB (4 GiB)")
    return {"adapters_mib": adapters, "stage_peaks_mib": peaks, "peak_mib": peak, "pass": passed}


def _pid(server: LocalServer) -> int:
    assert server.pid is not None  # a server this process started
    return server.pid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (proves it runs)")
    parser.add_argument(
        "--hh", action="store_true", help="the whole pipeline on the real HH split, sized to measure memory"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--work-dir", type=Path, help="log dirs and server storage (default: a temp dir)")
    parser.add_argument("pipeline_args", nargs="*", help="key=value for the pipeline (after --)")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-rlhf-real-"))
    log_path = work / ("hh" if args.hh else "pipeline")
    if args.hh:
        extra = [*HH_ARGS, *(HH_QUICK_ARGS if args.quick else ()), *args.pipeline_args]
    else:
        extra = [*(QUICK_ARGS if args.quick else ()), *args.pipeline_args]
    model_flags = ["--model", f"{SERVED_NAME}={smollm2_gguf()}", "--device", "cpu", "--dtype", "float32"]
    start = time.perf_counter()
    print(f"[bench] load average at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with (
        LocalServer(work / "server-storage", extra_args=model_flags) as server,
        PeakWatch(_pid(server)) as watch,
    ):
        adapters = asyncio.run(adapter_memory(server.url, watch))
        print(f"[memory] server RSS, MiB: {adapters}", flush=True)
        summary = run_pipeline(server, log_path, extra, watch)
        lifetime_peak_mib = watch.lifetime_peak_kib() / KIB_PER_MIB
    wall = time.perf_counter() - start
    timeline = work / "server_rss.tsv"
    timeline.write_text("".join(f"{t:.2f}\t{kib}\n" for t, kib in watch.timeline))
    stages = ("sft", "rm", "rl")

    print(f"\n[bench] curves (step:value), {'HH split, held out' if args.hh else 'bundled data'}:")
    curves = print_curves(log_path, stages)
    print(
        "\n[bench] cost per stage (wall s, CPU s client + server); per training step and per evaluation (median wall s):"
    )
    costs: dict[str, Any] = {}
    for stage in stages:
        spent = summary.get("stages", {}).get(stage, {})
        per_step = step_costs(log_path / stage)
        costs[stage] = {**spent, **per_step}
        print(
            f"  {stage:>3} wall {spent.get('wall_s', float('nan')):7.1f}  cpu {spent.get('total_cpu_s') or float('nan'):7.1f}"
            f"  steps {per_step.get('steps', 0):4.0f}  step {per_step.get('step_s', float('nan')):6.2f}"
            f"  eval {per_step.get('eval_s', float('nan')):6.2f}"
        )
    memory = print_memory(adapters, summary.get("stages", {}), lifetime_peak_mib, watch.mark_resets)
    result: dict[str, Any] = {
        "wall_s": wall,
        "curves": curves,
        "costs": costs,
        "memory": {**memory, "lifetime_peak_mib": lifetime_peak_mib},
        "load_average_end": os.getloadavg(),
        "log_path": str(log_path),
        "server_rss_timeline": str(timeline),
    }
    if not args.hh:
        full = recipe_defaults("rlhf_pipeline", SERVED_NAME)
        estimate = estimate_full_run_s(log_path, full, extra)
        result["estimated_full_run_s"] = estimate
        total = sum(estimate.values())
        print(
            "\n[bench] the default run at these per-step costs: "
            + ", ".join(f"{k} {v / 60:.1f} min" for k, v in estimate.items())
            + f"; total {total / 60:.1f} min (limit {WALL_LIMIT_S / 60:.0f} min, plus server start and imports)"
        )
        rows = targets(curves)
        result["targets"] = [{"target": n, "value": v, "pass": p} for n, v, p in rows]
        print(
            "\n[bench] targets" + (" (a --quick run is too short to meet them)" if args.quick else "") + ":"
        )
        for name, value, passed in rows:
            shown = "n/a" if value is None else f"{value:+.3f}"
            print(f"  {'PASS' if passed else 'FAIL'}  {name:<40} {shown}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n[bench] total wall time {wall:.0f} s (load average now {load}); logs in {log_path}; "
        f"server RSS every 100 ms (s, KiB) in {timeline}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
