"""Fair sharing of the compute: a training loop beside four sampling loops, against each alone.

One client trains (a LoRA forward_backward + optim_step per step, waiting for each step's result,
as a synchronous loop does); four others sample in loops (one request of `samples` x `new_tokens`
at a time each). The trainer is a process of its own, as a teammate's client would be: sharing
this process's interpreter lock and HTTP loop with the sampling loops would slow each side's
client in the shared phase only. Measured in the same run, on the same server:

* a training step's median latency with the four sampling loops running, over its latency alone
  (target: at most 2);
* the sampling loops' generated tokens per second while training runs, over their figure with no
  training (target: at least 0.5);
* the server's CPU seconds in each phase, which give each kind's share of the server's work while
  both run (training steps and tokens priced at their CPU cost alone), a figure that a loaded
  machine disturbs less than latencies and rates do.

    python -m bench.bench_fairness [--quick] [--threads N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/bench_fairness.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common  # sets the OpenMP wait policy before anything imports torch
from cookbook.client import types

SAMPLING_LOOPS = 4
TRAIN_BATCH, TRAIN_LENGTH = 4, 64
SAMPLES, NEW_TOKENS, PROMPT_LENGTH = 8, 64, 16
QUICK = {"steps": 3, "new_tokens": 4, "seconds": 1.0}
FULL = {"steps": 30, "new_tokens": NEW_TOKENS, "seconds": 8.0}


def train_data(vocab_size: int) -> list[types.Datum]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab_size, size=(TRAIN_BATCH, TRAIN_LENGTH + 1))
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(row[:-1].tolist()),
            loss_fn_inputs={
                "target_tokens": types.TensorData.from_numpy(row[1:]),
                "weights": types.TensorData.from_numpy(np.ones(TRAIN_LENGTH, dtype=np.float32)),
            },
        )
        for row in tokens
    ]


def step_latencies(
    trainer: Any, data: list[types.Datum], steps: int, until: Any | None = None
) -> list[float]:
    """Seconds per training step, for `steps` steps (or, given the event `until`, until it is set)."""
    adam = types.AdamParams(learning_rate=1e-4)
    seconds: list[float] = []
    while len(seconds) < steps if until is None else not until.is_set():
        start = time.perf_counter()
        backward = trainer.forward_backward(data, "cross_entropy")
        optim = trainer.optim_step(adam)
        backward.result()
        optim.result()
        seconds.append(time.perf_counter() - start)
    return seconds


def _trainer_main(url: str, vocab_size: int, commands: Connection, stop: ProcessEvent) -> None:
    """The training client's process: runs `(steps, until_stopped)` commands, answers their latencies."""
    from cookbook.client.connection import connect

    service = connect(url)
    trainer = service.create_lora_training_client(common.BASE_MODEL, rank=8)
    data = train_data(vocab_size)
    step_latencies(trainer, data, 1)  # warm-up
    commands.send(None)
    while (command := commands.recv()) is not None:
        steps, until_stopped = command
        commands.send(step_latencies(trainer, data, steps, stop if until_stopped else None))
    service.close()


class TrainerProcess:
    """A training loop in a process of its own, driven from here."""

    def __init__(self, url: str, vocab_size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._commands, child_end = context.Pipe()
        self._stop = context.Event()
        self._process = context.Process(
            target=_trainer_main, args=(url, vocab_size, child_end, self._stop), daemon=True
        )
        self._process.start()
        self._commands.recv()  # created and warmed up

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def steps(self, count: int) -> list[float]:
        self._commands.send((count, False))
        return self._commands.recv()

    def start(self) -> None:
        """Train until `stop`."""
        self._stop.clear()
        self._commands.send((0, True))

    def stop(self) -> list[float]:
        self._stop.set()
        return self._commands.recv()

    def close(self) -> None:
        self._commands.send(None)
        self._process.join(60)


class SamplingLoops:
    """SAMPLING_LOOPS threads, each sampling one request at a time until stopped; counts tokens."""

    def __init__(self, sampler: Any, vocab_size: int, new_tokens: int) -> None:
        rng = np.random.default_rng(1)
        self._prompts = [
            types.ModelInput.from_ints(rng.integers(1, vocab_size, PROMPT_LENGTH).tolist())
            for _ in range(SAMPLING_LOOPS)
        ]
        self._params = types.SamplingParams(max_tokens=new_tokens, temperature=1.0)
        self._sampler = sampler
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.tokens = 0
        self._threads = [threading.Thread(target=self._loop, args=(p,)) for p in self._prompts]

    def _loop(self, prompt: types.ModelInput) -> None:
        while not self._stop.is_set():
            response = self._sampler.sample(prompt, SAMPLES, self._params).result()
            with self._lock:
                self.tokens += sum(len(seq.tokens) for seq in response.sequences)

    def __enter__(self) -> SamplingLoops:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def tokens_over(self, seconds: float, server: common.CpuMeter) -> tuple[int, float]:
        """Tokens counted over the next `seconds` and the time they took, with the server's CPU metered."""
        with self._lock:
            before = self.tokens
        server.start()
        start = time.perf_counter()
        time.sleep(seconds)
        with self._lock:
            counted = self.tokens - before
            elapsed = time.perf_counter() - start
        server.stop()
        return counted, elapsed


def run(settings: common.BenchSettings, server: common.ServerHandle) -> common.BenchReport:
    from cookbook.client.connection import connect

    shape = QUICK if settings.quick else FULL
    rounds = settings.rounds_or(2)
    vocab = common.vocab_size()
    service = connect(server.url)
    sampler = service.create_sampling_client(base_model=common.BASE_MODEL)
    trainer = TrainerProcess(server.url, vocab)
    alone, shared, solo_rate, shared_rate = [], [], [], []
    meters = {phase: common.CpuMeter(server.pid) for phase in ("alone", "solo", "shared")}
    work = {"alone steps": 0.0, "solo tokens": 0.0, "shared steps": 0.0, "shared tokens": 0.0}
    for _ in range(rounds):
        meters["alone"].start()
        alone_steps = trainer.steps(shape["steps"])
        meters["alone"].stop()
        alone.append(statistics.median(alone_steps))
        work["alone steps"] += len(alone_steps)
        with SamplingLoops(sampler, vocab, shape["new_tokens"]) as loops:
            tokens, seconds = loops.tokens_over(shape["seconds"], meters["solo"])
            solo_rate.append(tokens / seconds)
            work["solo tokens"] += tokens
            trainer.start()
            tokens, seconds = loops.tokens_over(shape["seconds"], meters["shared"])
            shared_rate.append(tokens / seconds)
            work["shared tokens"] += tokens
            measured = trainer.stop()
            shared.append(statistics.median(measured))
            # steps back to back: their rate times the metered time is what ran in the window
            work["shared steps"] += len(measured) / sum(measured) * seconds
    trainer.close()
    service.close()
    latency_ratio = common.ratios(shared, alone)
    throughput_ratio = common.ratios(shared_rate, solo_rate)
    table = common.Table(
        f"Fairness: a training loop beside {SAMPLING_LOOPS} sampling loops "
        f"({SAMPLES} x {shape['new_tokens']} tokens per request), medians of {rounds} rounds",
        ["figure", "alone", "shared", "shared / alone", "target"],
    )
    table.add(
        "training step latency, ms",
        common.number(1e3 * statistics.median(alone), 1),
        common.number(1e3 * statistics.median(shared), 1),
        latency_ratio.text(2),
        "<= 2",
    )
    table.add(
        "sampling tokens / s",
        common.number(statistics.median(solo_rate), 0),
        common.number(statistics.median(shared_rate), 0),
        throughput_ratio.text(2),
        ">= 0.5",
    )
    tables = [table]
    data_out: dict[str, Any] = {
        "train_step_seconds_alone": alone,
        "train_step_seconds_shared": shared,
        "sampling_tokens_per_s_solo": solo_rate,
        "sampling_tokens_per_s_shared": shared_rate,
        "latency_ratio_shared_over_alone": latency_ratio.as_dict(),
        "throughput_ratio_shared_over_solo": throughput_ratio.as_dict(),
    }
    if server.pid is not None:
        cpu_table, data_out["server_cpu"] = server_cpu_shares(meters, work)
        tables.append(cpu_table)
    return common.BenchReport("fairness", tables, data_out)


def server_cpu_shares(
    meters: dict[str, common.CpuMeter], work: dict[str, float]
) -> tuple[common.Table, dict[str, float]]:
    """The server's CPU per phase, and while both ran, each kind's share of it: its steps or tokens
    priced at their CPU cost alone; what is left is the cost of interleaving them (below zero: the work
    cost less CPU shared than alone, as a training step on fewer intra-op threads beside a decode does)."""
    cpu = {phase: meter.server_cpu or 0.0 for phase, meter in meters.items()}
    per_step = cpu["alone"] / work["alone steps"]
    per_token = cpu["solo"] / max(work["solo tokens"], 1.0)
    training = work["shared steps"] * per_step / cpu["shared"]
    sampling = work["shared tokens"] * per_token / cpu["shared"]
    figures = {
        **{f"server_cores_{phase}": cpu[phase] / meters[phase].wall for phase in meters},
        "server_cpu_ms_per_step_alone": 1e3 * per_step,
        "server_cpu_ms_per_1000_tokens_solo": 1e6 * per_token,
        "shared_cpu_share_training": training,
        "shared_cpu_share_sampling": sampling,
        "shared_cpu_share_rest": 1 - training - sampling,
    }
    table = common.Table(
        "Server CPU: cores used per phase; while both run, each kind's share at its solo CPU cost",
        ["training alone", "sampling alone", "both", "training share", "sampling share", "rest"],
    )
    table.add(
        *(common.number(figures[f"server_cores_{phase}"], 2) for phase in meters),
        common.number(training, 2),
        common.number(sampling, 2),
        common.number(1 - training - sampling, 2),
    )
    return table, figures


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
