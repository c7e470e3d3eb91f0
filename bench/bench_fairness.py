"""Fair sharing of the compute: a training loop beside four sampling loops, against each alone.

One client trains (a LoRA forward_backward + optim_step per step, waiting for each step's result,
as a synchronous loop does); four others sample in loops (one request of `samples` x `new_tokens`
at a time each). Measured in the same run, on the same server:

* a training step's median latency with the four sampling loops running, over its latency alone
  (target: at most 2);
* the sampling loops' generated tokens per second while training runs, over their figure with no
  training (target: at least 0.5).

    python -m bench.bench_fairness [--quick] [--threads N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/bench_fairness.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common  # sets OMP_WAIT_POLICY before anything imports torch
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
    trainer: Any, data: list[types.Datum], steps: int, until: threading.Event | None = None
) -> list[float]:
    """Seconds per training step, for `steps` steps (or, given `until`, until it is set)."""
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


def train_until(trainer: Any, data: list[types.Datum], stop: threading.Event, out: list[float]) -> None:
    out.extend(step_latencies(trainer, data, 0, stop))


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

    def rate_over(self, seconds: float) -> float:
        """Tokens per second counted over the next `seconds`."""
        with self._lock:
            before = self.tokens
        start = time.perf_counter()
        time.sleep(seconds)
        with self._lock:
            return (self.tokens - before) / (time.perf_counter() - start)


def run(settings: common.BenchSettings, server: common.ServerHandle) -> common.BenchReport:
    from cookbook.client.connection import connect

    shape = QUICK if settings.quick else FULL
    rounds = settings.rounds_or(2)
    vocab = common.vocab_size()
    service = connect(server.url)
    trainer = service.create_lora_training_client(common.BASE_MODEL, rank=8)
    sampler = service.create_sampling_client(base_model=common.BASE_MODEL)
    data = train_data(vocab)
    step_latencies(trainer, data, 1)  # warm-up
    alone, shared, solo_rate, shared_rate = [], [], [], []
    for _ in range(rounds):
        alone.append(statistics.median(step_latencies(trainer, data, shape["steps"])))
        with SamplingLoops(sampler, vocab, shape["new_tokens"]) as loops:
            solo_rate.append(loops.rate_over(shape["seconds"]))
            stop = threading.Event()
            measured: list[float] = []
            training = threading.Thread(target=train_until, args=(trainer, data, stop, measured))
            training.start()
            shared_rate.append(loops.rate_over(shape["seconds"]))
            stop.set()
            training.join()
            shared.append(statistics.median(measured))
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
    data_out = {
        "train_step_seconds_alone": alone,
        "train_step_seconds_shared": shared,
        "sampling_tokens_per_s_solo": solo_rate,
        "sampling_tokens_per_s_shared": shared_rate,
        "latency_ratio_shared_over_alone": latency_ratio.as_dict(),
        "throughput_ratio_shared_over_solo": throughput_ratio.as_dict(),
    }
    return common.BenchReport("fairness", [table], data_out)


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
