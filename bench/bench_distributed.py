"""Distributed training: step time on 1 and 2 ranks, and what each rank holds of a sharded model.

Each side trains the built-in model on the same batches: 1 rank is the plain in-process engine
with 2 torch threads; 2 ranks are two processes (gloo, one thread each) running the distributed
engine exactly as a `--ranks 2` server's ranks do (every rank gets every call). So both sides use
the same 2 cores: on this machine the 2-rank time shows the cost of the collectives, not a speed-up,
which needs a core (or a GPU) per rank. Memory is the bytes of trained weights plus AdamW state one
rank holds for a full-weight model (FSDP2: about half on 2 ranks) and for a LoRA adapter (replicated).

    python -m bench.bench_distributed [--quick] [--rounds N] [--steps N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/bench_distributed.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # sets the OpenMP wait policy before anything imports torch

KINDS = {"full": 0, "lora": 16}
DATUMS, TOKENS = 16, 96


def _batch(step: int) -> Any:
    from cookbook.client import types

    data = []
    for i in range(DATUMS):
        length = TOKENS - 4 * i
        tokens = [(step * 31 + i * 7 + k) % (common.vocab_size() - 1) + 1 for k in range(length + 1)]
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": types.TensorData(data=tokens[1:], dtype="int64", shape=[length]),
                    "weights": types.TensorData(data=[1.0] * length, dtype="float32", shape=[length]),
                },
            )
        )
    return types.ForwardBackwardInput(data=data, loss_fn="cross_entropy")


def _rank_main(world: int, steps: int, out: Path) -> None:
    """One rank of one side: train each kind for `steps` timed steps; rank 0 writes the figures."""
    import torch

    from cookbook.client import types
    from server_stub.distributed.tensors import local_bytes
    from server_stub.torch_engine import TorchEngine

    storage = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    if world == 1:
        torch.set_num_threads(2)
        engine: Any = TorchEngine(storage)
        rank = 0
    else:
        from server_stub.distributed.group import join_group, leave_group
        from server_stub.distributed.rank_engine import RankEngine

        torch.set_num_threads(1)
        place = join_group("cpu")
        engine, rank = RankEngine(storage, place), place.rank
    adam = types.AdamParams(learning_rate=1e-4)
    figures: dict[str, Any] = {}
    for kind, lora_rank in KINDS.items():
        model_id = f"bench-{kind}"
        engine.create_model(model_id, common.BASE_MODEL, types.LoraConfig(rank=lora_rank), None)
        times = []
        for step in range(steps + 1):  # the first step builds optimizer state and warms up
            start = time.perf_counter()
            engine.forward_backward(model_id, _batch(step), True)
            engine.optim_step(model_id, adam)
            times.append(time.perf_counter() - start)
        model = engine._models[model_id]
        state = [t for kind_state in model.optimizer.state.values() for t in kind_state.values()]
        figures[kind] = {
            "step_s": statistics.median(times[1:]),
            "state_bytes": local_bytes([*model.params.values(), *state]),
        }
    if world > 1:
        leave_group()
    if rank == 0:
        out.write_text(json.dumps(figures))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_side(world: int, steps: int) -> dict[str, Any]:
    """Start `world` rank processes of this script and read rank 0's figures."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "figures.json"
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(world),
            "OMP_NUM_THREADS": "2" if world == 1 else "1",
        }
        command = [
            sys.executable,
            "-m",
            "bench.bench_distributed",
            "--rank-of",
            str(world),
            "--steps",
            str(steps),
            "--out",
            str(out),
        ]
        processes = [
            subprocess.Popen(command, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)
        ]
        codes = [p.wait() for p in processes]
        if any(codes):
            raise SystemExit(f"a rank failed: exit codes {codes}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 1 step: proves it runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--rank-of", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_of is not None:
        _rank_main(args.rank_of, args.steps, args.out)
        return 0
    rounds, steps = (1, 1) if args.quick else (args.rounds, args.steps)
    sides = {"1 rank": lambda: _run_side(1, steps), "2 ranks": lambda: _run_side(2, steps)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for index in range(rounds):  # alternate which side goes first
        for name in list(sides) if index % 2 == 0 else reversed(list(sides)):
            runs[name].append(sides[name]())
    table = common.Table(
        f"Training step ({DATUMS} datums, up to {TOKENS} tokens) and per-rank state, {rounds} round(s)",
        [
            "model",
            "1 rank step ms",
            "2 ranks step ms",
            "2/1 time",
            "1 rank state KB",
            "2 ranks state KB/rank",
            "2/1 state",
        ],
        note="2 ranks share the same 2 cores as 1 rank with 2 threads: the time ratio is overhead, not speed-up.",
    )
    data: dict[str, Any] = {}
    for kind in KINDS:
        one = [run[kind] for run in runs["1 rank"]]
        two = [run[kind] for run in runs["2 ranks"]]
        one_ms = common.Spread.of([r["step_s"] * 1e3 for r in one])
        two_ms = common.Spread.of([r["step_s"] * 1e3 for r in two])
        time_ratio = common.ratios([r["step_s"] for r in two], [r["step_s"] for r in one])
        state_ratio = two[0]["state_bytes"] / one[0]["state_bytes"]
        table.add(
            kind,
            one_ms.text(),
            two_ms.text(),
            time_ratio.text(2),
            common.number(one[0]["state_bytes"] / 1024),
            common.number(two[0]["state_bytes"] / 1024),
            f"{state_ratio:.2f}",
        )
        data[kind] = {
            "one_rank": one,
            "two_ranks": two,
            "time_ratio": time_ratio.as_dict(),
            "state_ratio": state_ratio,
        }
    print(table.render())
    if args.json is not None:
        common.write_json(
            args.json, {"bench": "distributed", "results": data, "load_average": os.getloadavg()}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
