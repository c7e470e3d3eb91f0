"""The headline job, measured: the default 3-stage RLHF pipeline, end to end, against its targets.

    python -m bench.bench_rlhf_pipeline                    # seed 0
    python -m bench.bench_rlhf_pipeline --seeds 0,1 --json /tmp/rlhf-bench.json
    python -m bench.bench_rlhf_pipeline --seeds 0,1,2,3,4 --baseline-every-seed --quiet
    python -m bench.bench_rlhf_pipeline --seed 2 -- rl.optimizer.learning_rate=5e-4 rl.kl_penalty_coef=0.05

Each seed runs the pipeline (`cookbook.recipes.preference.rlhf.rlhf_pipeline`, through
`bench.timed_rlhf_pipeline`) in a fresh process with a fresh log dir and a fresh server (its own
storage dir), so the wall time counts everything a user waits for: imports, data generation,
server start, the three stages and their evaluations. Each stage's wall time and the CPU seconds
of the client and of the server process are recorded; on a shared machine the CPU seconds are the
fairer measure of cost. The headline
metrics are read back from each stage's metrics.jsonl and checked against the targets.
Arguments after `--` go to the pipeline unchanged (key=value), for trying other settings.

The in-process baseline: the same seed and settings run again in a fresh process with
`base_url=inprocess://`, the same engine and scheduler called directly in the pipeline's own process
(no HTTP, no JSON, no polling; `cookbook.client.in_process`), by default for the first seed only
(`--baseline-every-seed`, `--no-baseline`). Each stage's wall time over HTTP divided by its wall time
in process is the service's overhead on that stage (target: `STAGE_RATIO_LIMIT`). The per-stage profile splits each
stage's time: the server's compute thread busy training, sampling or on other work (counted by its
scheduler), waiting (wall minus that), and the loops' own evaluation and checkpoint-saving seconds
(`time/eval[s]`, `time/save` summed from metrics.jsonl). Over several seeds the bench also reports
the spread (min / median / max) of every target's value and of each stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Table, write_json
from cookbook.client.connection import IN_PROCESS_PREFIX
from cookbook.recipes.preference.rlhf.report import STAGES, CurveSummary, summarize_pipeline
from cookbook.utils.jsonl import read_jsonl
from cookbook.utils.ml_log import METRICS_FILE
from cookbook.utils.timing import TIME_PREFIX
from server_stub.compute_time import COMPUTE_KINDS

PIPELINE_MODULE = "bench.timed_rlhf_pipeline"
REPO_ROOT = Path(__file__).resolve().parents[1]
SUMMARY_FILE = "pipeline_summary.json"
WALL_LIMIT_S = 120.0  # on a quiet machine: the load gauge says how far from quiet a run was
STAGE_RATIO_LIMIT = 1.3  # a stage's wall time over HTTP / in process
QUIET_REFERENCE_STEP_MS = 89.0
"""fwd+bwd+AdamW of the built-in model's architecture on a 32x64 batch, in-process with 2 threads, as
measured on a quiet 2-core machine (shared/reference/toy-pipeline-measurements.md, section 4)."""

Summaries = dict[str, dict[str, CurveSummary]]
PROFILE_TIME_METRICS: dict[str, tuple[str, ...]] = {
    "eval_s": (f"{TIME_PREFIX}evals", f"{TIME_PREFIX}eval"),  # the supervised loop's name, the RL loop's
    "save_s": (f"{TIME_PREFIX}save",),
}
"""Profile entries summed from a stage's `time/*` metrics, the loops' own timings."""
PROFILE_FIELDS: tuple[tuple[str, str], ...] = (
    ("wall", "wall_s"),
    ("client CPU", "client_cpu_s"),
    ("server CPU", "server_cpu_s"),
    ("train", "training_s"),
    ("sample", "sampling_s"),
    ("other", "other_s"),
    ("waiting", "waiting_s"),
    ("eval", "eval_s"),
    ("save", "save_s"),
)
"""The per-stage profile's columns (header, key); train / sample / other are the server's compute thread."""


@dataclass(frozen=True)
class Target:
    """One pass/fail criterion on a run: `measure` reads the number, `check` judges it."""

    name: str
    stage: str
    measure: Callable[[RunResult], float | None]
    check: Callable[[float], bool]
    goal: str
    needs_baseline: bool = False  # measured only on a seed that also ran in process

    def row(self, run: RunResult) -> dict[str, Any]:
        """The target on one run; `pass` is None when it was not measured for want of a baseline run."""
        value = self.measure(run)
        if value is None and self.needs_baseline and run.baseline is None:
            return {"target": self.name, "goal": self.goal, "value": None, "pass": None}
        passed = value is not None and self.check(value) and run.returncode == 0
        return {"target": self.name, "goal": self.goal, "value": value, "pass": passed}


def _metric(stage: str, key: str, field: str) -> Callable[[RunResult], float | None]:
    def read(run: RunResult) -> float | None:
        found = run.summaries.get(stage, {}).get(key)
        if found is None:
            return None
        if field == "change":
            return found.change
        if field == "min_minus_first":
            return found.min - found.first
        return float(getattr(found, field))

    return read


def curve_target(
    name: str, stage: str, key: str, field: str, check: Callable[[float], bool], goal: str
) -> Target:
    """A target on one curve (`key`) of one stage, read as `field` of its summary."""
    return Target(name, stage, _metric(stage, key, field), check, goal)


def stage_ratio_target(stage: str) -> Target:
    """A stage's wall time over HTTP against the same stage in process (None without a baseline run)."""
    return Target(
        f"{stage} wall / in-process wall",
        stage,
        lambda run: run.stage_ratio(stage),
        lambda v: v <= STAGE_RATIO_LIMIT,
        f"<= {STAGE_RATIO_LIMIT}",
        needs_baseline=True,
    )


TARGETS: tuple[Target, ...] = (
    Target(
        "whole pipeline wall time (s)",
        "all",
        lambda run: run.wall_s,
        lambda v: v <= WALL_LIMIT_S,
        f"<= {WALL_LIMIT_S:.0f} (quiet machine)",
    ),
    *(stage_ratio_target(stage) for stage in STAGES),
    curve_target("SFT test/nll falls", "sft", "test/nll", "change", lambda v: v < 0, "< 0"),
    curve_target("SFT test/nll last", "sft", "test/nll", "last", lambda v: v <= 0.40, "<= 0.40"),
    curve_target("PM test/accuracy last", "rm", "test/accuracy", "last", lambda v: v >= 0.85, ">= 0.85"),
    curve_target(
        "PM test/accuracy/correctness last",
        "rm",
        "test/accuracy/correctness",
        "last",
        lambda v: v >= 0.75,
        ">= 0.75",
    ),
    curve_target(
        "RL test/win_rate rise",
        "rl",
        "test/win_rate",
        "change",
        lambda v: v >= 0.20,
        ">= +0.20",
    ),
    curve_target("RL test/win_rate last", "rl", "test/win_rate", "last", lambda v: v >= 0.70, ">= 0.70"),
    curve_target(
        "RL test/gold_win_rate rise",
        "rl",
        "test/gold_win_rate",
        "change",
        lambda v: v >= 0.15,
        ">= +0.15",
    ),
    curve_target(
        "RL test/gold_win_rate min - first",
        "rl",
        "test/gold_win_rate",
        "min_minus_first",
        lambda v: v >= 0.0,
        ">= 0 (never below its start)",
    ),
)


def stage_time_metrics(stage_dir: Path) -> dict[str, float]:
    """Every `time/*` metric of a stage's metrics.jsonl, summed over its rows (empty when it logged none)."""
    path = stage_dir / METRICS_FILE
    totals: dict[str, float] = {}
    for row in read_jsonl(path, skip_invalid=True) if path.exists() else []:
        if not isinstance(row, dict):
            continue
        for key, value in row.items():
            if key.startswith(TIME_PREFIX) and isinstance(value, int | float):
                totals[key] = totals.get(key, 0.0) + float(value)
    return totals


@dataclass
class RunResult:
    seed: int
    log_path: Path
    returncode: int
    wall_s: float
    cpu_s: float  # the pipeline process and its server child, as reaped
    summaries: Summaries
    pipeline: dict[str, Any]
    time_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> summed time/* metrics
    in_process: bool = False
    baseline: RunResult | None = None  # the same seed and settings in process

    @property
    def mode(self) -> str:
        return "in-process" if self.in_process else "http"

    def stage(self, stage: str) -> dict[str, Any]:
        """What the pipeline recorded about one stage (status, wall_s, CPU, compute_s, ...)."""
        return self.pipeline.get("stages", {}).get(stage, {})

    def stage_ratio(self, stage: str) -> float | None:
        """The stage's wall time here over its wall time in the in-process baseline."""
        if self.baseline is None:
            return None
        mine, base = self.stage(stage).get("wall_s"), self.baseline.stage(stage).get("wall_s")
        return mine / base if mine and base else None

    def profile(self, stage: str) -> dict[str, float | None]:
        """Where the stage's time went: PROFILE_FIELDS' keys, None where unmeasured."""
        recorded = self.stage(stage)
        compute = recorded.get("compute_s") or {}
        times = self.time_metrics.get(stage, {})
        loops = {
            name: (sum(times[k] for k in keys if k in times) if any(k in times for k in keys) else None)
            for name, keys in PROFILE_TIME_METRICS.items()
        }
        entries = {
            **{key: recorded.get(key) for key in ("wall_s", "client_cpu_s", "server_cpu_s", "waiting_s")},
            **{f"{kind}_s": compute.get(kind) for kind in COMPUTE_KINDS},
            **loops,
        }
        return {key: entries.get(key) for _, key in PROFILE_FIELDS}

    def target_rows(self) -> list[dict[str, Any]]:
        return [target.row(self) for target in TARGETS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "mode": self.mode,
            "log_path": str(self.log_path),
            "returncode": self.returncode,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "headline": {
                stage: {k: s.to_dict() for k, s in metrics.items()}
                for stage, metrics in self.summaries.items()
            },
            "stages": self.pipeline.get("stages", {}),
            "server_startup_s": self.pipeline.get("server_startup_s"),
            "profile": {stage: self.profile(stage) for stage in STAGES},
            "stage_ratios": {stage: self.stage_ratio(stage) for stage in STAGES},
            "targets": self.target_rows(),
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
        }


def run_pipeline(
    seed: int,
    work_dir: Path,
    extra_args: Sequence[str],
    quiet: bool,
    keep_storage: bool = False,
    in_process: bool = False,
) -> RunResult:
    """One fresh pipeline process (fresh log dir and server storage), timed from its start.

    `in_process`: the engine runs inside the pipeline's process (`base_url=inprocess://`) instead of
    in the bundled server it starts."""
    name = f"seed{seed}-inprocess" if in_process else f"seed{seed}"
    log_path = work_dir / name
    storage = work_dir / f"{name}-server-storage"
    env = {
        **os.environ,
        "COOKBOOK_SERVER_STORAGE": str(storage),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    for variable in ("COOKBOOK_BASE_URL", "TINKER_BASE_URL"):
        env.pop(variable, None)  # always the pipeline's own fresh server
    where = [f"base_url={IN_PROCESS_PREFIX}"] if in_process else []
    command = [
        sys.executable,
        "-m",
        PIPELINE_MODULE,
        f"log_path={log_path}",
        f"seed={seed}",
        *extra_args,
        *where,
    ]
    print(f"[bench] seed {seed}: {' '.join(command[1:])}", flush=True)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    output_file = log_path.parent / f"{name}.log"
    with open(output_file, "w") as out:
        done = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            text=True,
            stdout=out if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
        )
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if not keep_storage:
        shutil.rmtree(storage, ignore_errors=True)
    if done.returncode != 0:
        print(
            f"[bench] seed {seed} ({'in process' if in_process else 'http'}): the pipeline exited with "
            f"{done.returncode} (output: {output_file})",
            flush=True,
        )
    summary_path = log_path / SUMMARY_FILE
    pipeline = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    times = {stage: stage_time_metrics(log_path / stage) for stage in STAGES}
    return RunResult(
        seed, log_path, done.returncode, wall, cpu, summarize_pipeline(log_path), pipeline, times, in_process
    )


def reference_step_ms() -> float:
    """The median wall time of the quiet-machine reference step, measured now (a load gauge), in a child
    process with passive OpenMP waits: the conditions its quiet figure was measured under, whatever
    wait policy this process runs with."""
    command = [
        sys.executable,
        "-c",
        "from bench.bench_rlhf_pipeline import _reference_step_ms_here as f; print(f())",
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("GOMP_SPINCOUNT", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _reference_step_ms_here(steps: int = 20, threads: int = 2) -> float:
    import statistics

    import torch

    from server_stub.models.tiny_llama import build_tiny_llama

    torch.set_num_threads(threads)
    model = build_tiny_llama(torch.device("cpu"), torch.float32).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    tokens = torch.randint(1, model.config.vocab_size, (32, 64), generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 3:  # warm-up steps are not timed
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metrics_table(result: RunResult) -> Table:
    table = Table(
        f"seed {result.seed}: headline metrics ({result.log_path})",
        ["stage", "metric", "first", "last", "min", "max", "steps"],
    )
    for stage in STAGES:
        for key, s in result.summaries.get(stage, {}).items():
            table.add(
                stage,
                key,
                _fmt(s.first),
                _fmt(s.last),
                _fmt(s.min),
                _fmt(s.max),
                f"{s.first_step}..{s.last_step}",
            )
    return table


def timing_table(result: RunResult) -> Table:
    table = Table(
        f"seed {result.seed}: time per stage (s; CPU = client process + server process)",
        ["stage", "status", "wall", "client CPU", "server CPU", "total CPU"],
    )
    for stage in STAGES:
        t = result.pipeline.get("stages", {}).get(stage, {})
        table.add(
            stage,
            t.get("status", "-"),
            _fmt(t.get("wall_s"), 1),
            _fmt(t.get("client_cpu_s"), 1),
            _fmt(t.get("server_cpu_s"), 1),
            _fmt(t.get("total_cpu_s"), 1),
        )
    table.add("server start", "", _fmt(result.pipeline.get("server_startup_s"), 1), "", "", "")
    table.add(
        "whole process", f"rc={result.returncode}", _fmt(result.wall_s, 1), "", "", _fmt(result.cpu_s, 1)
    )
    return table


def targets_table(results: Sequence[RunResult]) -> Table:
    columns = ["target", "goal", *[f"seed {r.seed}" for r in results]]
    table = Table("targets", columns)
    rows_by_seed = [r.target_rows() for r in results]
    for i, target in enumerate(TARGETS):
        cells = [
            "- (no baseline run)"
            if rows[i]["pass"] is None
            else f"{_fmt(rows[i]['value'], 1 if target.stage == 'all' else 3)} "
            f"{'PASS' if rows[i]['pass'] else 'FAIL'}"
            for rows in rows_by_seed
        ]
        table.add(target.name, target.goal, *cells)
    return table


def profile_table(result: RunResult) -> Table:
    """Each stage over HTTP and, when it ran, in process: where its time went, and the ratio of the walls."""
    table = Table(
        f"seed {result.seed}: per-stage profile (s)",
        ["stage", "run", "ratio", *[header for header, _ in PROFILE_FIELDS]],
        note=(
            f"ratio: wall over HTTP / wall in process (target <= {STAGE_RATIO_LIMIT}); train, sample, other: "
            "the server's compute thread busy on that work; waiting: wall minus those; eval, save: the "
            "loop's own time/eval[s] and time/save; CPU in process is all client"
        ),
    )
    runs = [result] if result.baseline is None else [result, result.baseline]
    for stage in STAGES:
        for run in runs:
            ratio = _fmt(result.stage_ratio(stage), 2) if run is result and result.baseline else ""
            profile = run.profile(stage)
            table.add(stage, run.mode, ratio, *[_fmt(profile[key], 1) for _, key in PROFILE_FIELDS])
    for run in runs:
        startup = _fmt(run.pipeline.get("server_startup_s"), 1)
        table.add("server start", run.mode, "", startup, *[""] * (len(PROFILE_FIELDS) - 1))
    for run in runs:
        ratio = _fmt(result.wall_s / run.wall_s, 2) if run is not result else ""
        table.add("whole process", run.mode, ratio, _fmt(run.wall_s, 1), *[""] * (len(PROFILE_FIELDS) - 1))
    return table


def spread(values: Sequence[float | None]) -> dict[str, float] | None:
    """min / median / max / n of the values that were measured (None when none was)."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": min(known), "median": statistics.median(known), "max": max(known), "n": len(known)}


def seed_spread(results: Sequence[RunResult]) -> dict[str, dict[str, float] | None]:
    """Each target's value and each stage's wall time over HTTP, spread over the seeds."""
    found: dict[str, dict[str, float] | None] = {
        target.name: spread([target.measure(r) for r in results]) for target in TARGETS
    }
    for stage in STAGES:
        found[f"{stage} wall (s)"] = spread([r.stage(stage).get("wall_s") for r in results])
    return found


def spread_table(results: Sequence[RunResult]) -> Table:
    table = Table(
        f"spread over seeds {','.join(str(r.seed) for r in results)}",
        ["measure", "min", "median", "max", "n"],
    )
    for name, found in seed_spread(results).items():
        if found is None:
            table.add(name, "-", "-", "-", 0)
        else:
            table.add(name, _fmt(found["min"]), _fmt(found["median"]), _fmt(found["max"]), found["n"])
    return table


def report_tables(results: Sequence[RunResult]) -> list[Table]:
    """Every table the bench prints, in order: per seed its metrics, timing and profile; then targets and spread."""
    tables = [t for r in results for t in (metrics_table(r), timing_table(r), profile_table(r))]
    tables.append(targets_table(results))
    if len(results) > 1:
        tables.append(spread_table(results))
    return tables


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description="Run the default RLHF pipeline and check its targets.")
    parser.add_argument("--seed", type=int, default=0, help="the pipeline's seed (default 0)")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds, run one after another (e.g. 0,1)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also save the results as JSON"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the runs' log dirs go (default: a new temporary directory, kept)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="send the pipeline's output to <work-dir>/seedN.log"
    )
    parser.add_argument(
        "--keep-storage",
        action="store_true",
        help="keep each run's server storage (its checkpoints), e.g. to rerun a later stage",
    )
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline-every-seed",
        action="store_true",
        help="run the in-process baseline for every seed (default: the first seed only)",
    )
    baseline.add_argument(
        "--no-baseline", action="store_true", help="skip the in-process baseline (no per-stage ratios)"
    )
    parser.add_argument(
        "--no-load-gauge",
        action="store_true",
        help="skip timing the reference training step before and after the runs",
    )
    args = parser.parse_args(argv)
    bad = [a for a in extra if "=" not in a]
    if bad:
        parser.error(f"pipeline arguments after -- must be key=value, got {bad}")
    return args, extra


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-rlhf-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    gauge = [] if args.no_load_gauge else [reference_step_ms()]
    results = []
    for index, seed in enumerate(seeds):
        result = run_pipeline(seed, work_dir, extra, args.quiet, args.keep_storage)
        if not args.no_baseline and (index == 0 or args.baseline_every_seed):
            result.baseline = run_pipeline(
                seed, work_dir, extra, args.quiet, args.keep_storage, in_process=True
            )
        results.append(result)
    if not args.no_load_gauge:
        gauge.append(reference_step_ms())
    print("\n\n".join(t.render() for t in report_tables(results)), flush=True)
    if gauge:
        slowdown = sum(gauge) / len(gauge) / QUIET_REFERENCE_STEP_MS
        print(
            f"\n[bench] load gauge: the reference training step took {gauge[0]:.0f} ms before and {gauge[-1]:.0f} ms "
            f"after the runs ({QUIET_REFERENCE_STEP_MS:.0f} ms on a quiet machine): this machine ran about "
            f"{slowdown:.1f}x slower than quiet, so the wall times above may be that much inflated",
            flush=True,
        )
    all_pass = all(row["pass"] is not False for r in results for row in r.target_rows())
    print(
        f"\n[bench] {'all targets PASS' if all_pass else 'some targets FAIL'} "
        f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)",
        flush=True,
    )
    if args.json is not None:
        write_json(
            args.json,
            {
                "pipeline_args": extra,
                "seeds": seeds,
                "cpu_count": os.cpu_count(),
                "reference_step_ms": gauge,
                "quiet_reference_step_ms": QUIET_REFERENCE_STEP_MS,
                "load_average_end": os.getloadavg(),
                "runs": [r.to_dict() for r in results],
                "spread": seed_spread(results),
                "all_pass": all_pass,
            },
        )
    runs = [*results, *(r.baseline for r in results if r.baseline is not None)]
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
