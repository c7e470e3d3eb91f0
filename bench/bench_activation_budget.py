"""What the activation budget costs and saves on SmolLM2-135M: a training step's CPU seconds and peak memory.

    python -m bench.bench_activation_budget            # 2 interleaved rounds per budget
    python -m bench.bench_activation_budget --rounds 3

The server cuts a training pass into pieces whose activations fit `--activation-budget-mib`
(server_stub/activation_budget.py). This runs the same batches through one in-process engine
serving SmolLM2's GGUF in fp32 on the CPU (a LoRA rank-32 model), budget by budget, in interleaved
rounds: an RL-like batch (2 prompts of HH lengths x 2 answers, cross-entropy over the answers) and
a reward-model batch (4 sequences of HH judge lengths, Bradley-Terry on a reward head); a sequence
longer than a budget's cap runs alone with its layers recomputed in backward. The
baseline is the budget off (pieces of `max_pass_tokens` and the CPU's 1536-token speed chunks, as
before the budget). Per budget: the process's CPU seconds per pass (median), its ratio to the
baseline per round, and the pass's peak resident memory above the resident set before it (VmHWM,
reset before each pass; the engine gives freed memory back after each large pass).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.server_memory import KIB_PER_MIB, memory_kib, reset_high_water_mark

BUDGETS_MIB = {"off": 1 << 30, "1024": 1024, "512": 512}
BASELINE = "off"
RL_PROMPTS = (700, 221)  # HH prompts: a long one and the median
RL_ANSWER_TOKENS = 24
RL_GROUP = 2
RM_LENGTHS = (1146, 458, 221, 160)  # two (chosen, rejected) pairs: the longest HH judge prompt, p90, median


def _tokens(rng: random.Random, count: int) -> list[int]:
    return [rng.randrange(100, 40_000) for _ in range(count)]


def _rl_batch(rng: random.Random) -> Any:
    from cookbook.client import types

    data = []
    for prompt in RL_PROMPTS:
        for _ in range(RL_GROUP):
            tokens = _tokens(rng, prompt + RL_ANSWER_TOKENS + 1)
            weights = [0.0] * prompt + [1.0] * RL_ANSWER_TOKENS
            data.append(
                types.Datum(
                    model_input=types.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
                )
            )
    return types.ForwardBackwardInput(data=data, loss_fn="cross_entropy")


def _rm_batch(rng: random.Random) -> Any:
    from cookbook.client import types

    data = [
        types.Datum(model_input=types.ModelInput.from_ints(_tokens(rng, n)), loss_fn_inputs={})
        for n in RM_LENGTHS
    ]
    return types.ForwardBackwardInput(data=data, loss_fn="bradley_terry")


def _timed(
    engine: Any, model_id: str, batch: Any, budget_mib: int, peaks: list[float]
) -> Callable[[], float]:
    def run() -> float:
        from server_stub.memory_release import release_free_memory

        engine.activation_budget_mib = budget_mib
        release_free_memory()
        reset_high_water_mark(os.getpid())
        before = memory_kib(os.getpid())["VmRSS"]
        start = time.process_time()
        engine.forward_backward(model_id, batch, backward=True)
        spent = time.process_time() - start
        peaks.append((memory_kib(os.getpid())["VmHWM"] - before) / KIB_PER_MIB)
        engine._models[model_id].optimizer.zero_grad()
        return spent

    return run


def run(settings: common.BenchSettings) -> common.BenchReport:
    from bench.smollm2 import smollm2_gguf
    from cookbook.client import types
    from server_stub.torch_engine import TorchEngine

    rounds = settings.rounds_or(2)
    table = common.Table(
        "SmolLM2-135M LoRA rank 32, one training pass per budget (in-process engine, fp32 CPU)",
        ["batch", "budget MiB", "piece cap tokens", "CPU s", f"ratio to {BASELINE}", "peak over start MiB"],
        note=f"median [range] of {rounds} interleaved rounds; load average at the start "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
    )
    data: dict[str, Any] = {"cases": []}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-activation-budget-") as storage:
        engine = TorchEngine(
            Path(storage), device="cpu", dtype="float32", extra_models={"smollm2": str(smollm2_gguf())}
        )
        lora = types.LoraConfig(rank=32)
        engine.create_model("policy", "smollm2", lora, None)
        engine.create_model("reward", "smollm2", lora, None, reward_head=True)
        for kind, model_id, batch in (("rl", "policy", _rl_batch(rng)), ("rm", "reward", _rm_batch(rng))):
            peaks: dict[str, list[float]] = {name: [] for name in BUDGETS_MIB}
            sides = {
                name: _timed(engine, model_id, batch, budget, peaks[name])
                for name, budget in BUDGETS_MIB.items()
            }
            times = common.interleaved(rounds, sides)
            model = engine._models[model_id]
            for name, budget in BUDGETS_MIB.items():
                engine.activation_budget_mib = budget
                cap = engine.pass_sizes(model, backward=True)[1]
                ratio = common.ratios(times[name], times[BASELINE])
                cpu = common.Spread.of(times[name])
                peak = common.Spread.of(peaks[name])
                table.add(kind, name, cap, cpu.text(1), ratio.text(2), peak.text(0))
                data["cases"].append(
                    {
                        "batch": kind,
                        "budget": name,
                        "cap_tokens": cap,
                        "cpu_s": cpu.as_dict(),
                        "ratio": ratio.as_dict(),
                        "peak_mib": peak.as_dict(),
                    }
                )
    data["load_average_end"] = os.getloadavg()
    return common.BenchReport("activation_budget", [table], data)


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_in_process_cli(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
