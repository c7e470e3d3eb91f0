"""The DPO recipe on a real model: SmolLM2-135M-Instruct (its GGUF) over the bundled comparisons.

    python -m bench.bench_dpo_real            # SFT then DPO with the pretrained-model defaults
    python -m bench.bench_dpo_real --quick    # 2 SFT and 3 DPO steps, small evaluations: proves it runs
    python -m bench.bench_dpo_real -- max_steps=60 optimizer.learning_rate=3e-4   # other settings

A server is started serving the GGUF as "smollm2" in fp32 on the CPU (as `bench_rlhf_real` does), and
the DPO recipe (`cookbook.recipes.preference.dpo.train`) runs against it with the defaults
`cookbook.model_config.RECIPE_DEFAULTS` gives a pretrained model. It prints the curves (SFT
`test/nll`; DPO on the held-out comparisons: `test/accuracy`, `test/margin`, `test/dpo_loss`,
`test/nll`, and the gold rule's `test/gold_win_rate`, sampled and greedy), the wall and CPU seconds
(client + server) of loading the base and of each stage, the median cost of a step and of an
evaluation, and PASS/FAIL against the targets below.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bench.common  # noqa: F401  (process settings before torch loads)
from bench.bench_rlhf_real import BASE_LOAD_TIMEOUT_S, PROBE_TOKENS, SERVED_NAME, step_costs
from bench.smollm2 import smollm2_gguf
from bench.timed_rlhf_pipeline import cpu_clock
from cookbook.client import connect, types
from cookbook.client.local_server import LocalServer
from cookbook.model_config import recipe_defaults
from cookbook.preference import train_dpo
from cookbook.recipes.preference.dpo import train as dpo_recipe
from cookbook.recipes.preference.rlhf.report import stage_curves
from cookbook.recipes.renamed_keys import recipe_entrypoint

CURVES: dict[str, tuple[str, ...]] = {
    "sft": ("test/nll",),
    "dpo": (
        "test/accuracy",
        "test/margin",
        "test/dpo_loss",
        "test/nll",
        "test/gold_win_rate",
        "test/greedy_gold_win_rate",
    ),
}
ACCURACY_TARGET = 0.70
ACCURACY_RISE_TARGET = 0.15
QUICK_ARGS: tuple[str, ...] = (
    "sft.steps=2",
    "sft.eval_every=2",
    "max_steps=3",
    "eval_every=3",
    "test_size=8",
    "eval_comparisons=4",
)


def load_base(url: str) -> None:
    """Load the base model now (dequantising the GGUF takes minutes on a loaded CPU), so no stage pays it."""
    service = connect(url, timeout=BASE_LOAD_TIMEOUT_S, unresponsive_after=BASE_LOAD_TIMEOUT_S)
    try:

        async def one_token() -> None:
            sampler = await service.create_sampling_client_async(base_model=SERVED_NAME)
            prompt = types.ModelInput.from_ints(list(PROBE_TOKENS))
            greedy = types.SamplingParams(max_tokens=1, temperature=0.0)
            await sampler.sample_async(prompt, num_samples=1, sampling_params=greedy)

        asyncio.run(one_token())
    finally:
        service.close()


def recipe_config(server_url: str, log_path: Path, extra: Sequence[str]) -> dpo_recipe.CLIConfig:
    """The recipe's config as its command line would make it: the pretrained defaults under `extra`."""
    argv = [f"base_url={server_url}", f"model_name={SERVED_NAME}", f"log_path={log_path}", *extra]
    print("[bench] dpo " + " ".join(argv), flush=True)

    def made(config: dpo_recipe.CLIConfig) -> dpo_recipe.CLIConfig:
        return config

    defaults = functools.partial(recipe_defaults, "dpo")
    return recipe_entrypoint(made, dpo_recipe.RENAMED_KEYS, defaults, argv=argv)


def timed_stage(
    clock: Callable[[], Callable[[], dict[str, Any]]], work: Callable[[], Any]
) -> tuple[Any, dict[str, Any]]:
    """`work()`'s result and what it cost by `clock` (wall and CPU seconds)."""
    stop = clock()
    result = work()
    return result, stop()


def curves_of(log_path: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per stage, each curve of `CURVES` its log holds, as (step, value) points."""
    found: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for stage, keys in CURVES.items():
        curves = stage_curves(log_path / stage)
        for key in keys:
            if key in curves:
                steps, values = curves[key]
                found.setdefault(stage, {})[key] = list(zip(steps, values, strict=True))
    return found


def targets(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> list[tuple[str, float | None, bool]]:
    """(target, measured value, passed) for the held-out accuracy's last value and its rise."""
    accuracy = [v for _, v in curves.get("dpo", {}).get("test/accuracy", [])]
    last = accuracy[-1] if accuracy else None
    rise = accuracy[-1] - accuracy[0] if accuracy else None
    return [
        (
            f"DPO test/accuracy last >= {ACCURACY_TARGET:.2f}",
            last,
            last is not None and last >= ACCURACY_TARGET,
        ),
        (
            f"DPO test/accuracy rise >= +{ACCURACY_RISE_TARGET:.2f}",
            rise,
            rise is not None and rise >= ACCURACY_RISE_TARGET,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (proves it runs)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--work-dir", type=Path, help="log dir and server storage (default: a temp dir)")
    parser.add_argument("--log-name", default="dpo-run", help="the run's folder under the work dir")
    parser.add_argument("recipe_args", nargs="*", help="key=value for the DPO recipe (after --)")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-dpo-real-"))
    log_path = work / args.log_name
    extra = [*(QUICK_ARGS if args.quick else ()), *args.recipe_args]
    model_flags = ["--model", f"{SERVED_NAME}={smollm2_gguf()}", "--device", "cpu", "--dtype", "float32"]
    start = time.perf_counter()
    print(f"[bench] load average at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    costs: dict[str, dict[str, Any]] = {}
    with LocalServer(work / "server-storage", extra_args=model_flags) as server:
        clock = cpu_clock(server.pid)
        _, costs["base load"] = timed_stage(clock, lambda: load_base(server.url))
        cli = recipe_config(server.url, log_path, extra)
        start_path, costs["sft"] = timed_stage(clock, lambda: dpo_recipe.start_path_of(cli))
        print(f"[bench] DPO starts from {start_path}", flush=True)
        _, costs["dpo"] = timed_stage(clock, lambda: train_dpo.main(dpo_recipe.dpo_config(cli, start_path)))
    wall = time.perf_counter() - start

    print("\n[bench] curves (step:value); DPO's on the held-out comparisons:")
    curves = curves_of(log_path)
    for stage, stage_curves_found in curves.items():
        for key, points in stage_curves_found.items():
            print(f"  {stage:>3} {key:<26} " + "  ".join(f"{s}:{v:.3f}" for s, v in points))
    print(
        "\n[bench] cost (wall s, CPU s client + server); per training step and per evaluation (median wall s):"
    )
    for stage, spent in costs.items():
        per_step = step_costs(log_path / stage) if stage in CURVES else {}
        spent.update(per_step)
        print(
            f"  {stage:>9} wall {spent['wall_s']:7.1f}  cpu {spent.get('total_cpu_s') or float('nan'):7.1f}"
            f"  steps {per_step.get('steps', 0):4.0f}  step {per_step.get('step_s', float('nan')):6.2f}"
            f"  eval {per_step.get('eval_s', float('nan')):6.2f}"
        )
    rows = targets(curves)
    print("\n[bench] targets" + (" (a --quick run is too short to meet them)" if args.quick else "") + ":")
    for name, value, passed in rows:
        shown = "n/a" if value is None else f"{value:+.3f}"
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<36} {shown}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n[bench] total wall time {wall:.0f} s (load average now {load}); logs in {log_path}")
    if args.json:
        result = {
            "wall_s": wall,
            "curves": curves,
            "costs": costs,
            "targets": [{"target": n, "value": v, "pass": p} for n, v, p in rows],
            "load_average_end": os.getloadavg(),
            "log_path": str(log_path),
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
