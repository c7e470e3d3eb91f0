"""The wire: our client's training throughput and per-call overhead, JSON wire vs binary wire vs in-process.

Three sides per case, interleaved round by round: in-process PyTorch (bench_training's baseline),
a training client on the JSON wire and one on the binary (protobuf) wire, both pipelined as a
training loop is (forward_backward + optim_step, step k+1 submitted before step k is read). Then,
per wire: the per-call overhead of a sequential forward_backward round trip beyond the same
forward + backward in-process, the client's and the server's CPU per step, and what the codec
alone costs in this process (encoding the request, decoding the result) with the bytes it makes.

    python -m bench.bench_wire [--quick] [--threads N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/bench_wire.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common  # sets the OpenMP wait policy before anything imports torch
from bench.bench_overhead import forward_backward_in_process
from bench.bench_training import InProcessTrainer, SyntheticBatch, TrainCase, pipelined_step_times
from cookbook.client import proto, types
from cookbook.client.http.transport import decode, encode

WIRES = ("json", "protobuf")
CASES = tuple(TrainCase(rank, b, t, "cross_entropy") for rank in (0, 8) for b, t in ((32, 64), (64, 128)))
QUICK_CASES = (TrainCase(0, 2, 16, "cross_entropy"), TrainCase(8, 2, 16, "cross_entropy"))
SEQUENTIAL_CALLS = 8


def _request_bytes(wire: str, request: types.ForwardBackwardRequest) -> bytes:
    return proto.forward_backward_request_to_proto(request) if wire == "protobuf" else encode(request)


def _output_bytes(wire: str, output: types.ForwardBackwardOutput) -> bytes:
    return proto.forward_backward_output_to_proto(output) if wire == "protobuf" else encode(output)


def _decode_output(wire: str, raw: bytes) -> types.ForwardBackwardOutput:
    if wire == "protobuf":
        return proto.forward_backward_output_from_proto(raw)
    return types.ForwardBackwardOutput.model_validate(decode(raw))


def _best_ms(call: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` runs: a codec's own cost, without the machine's noise."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def codec_costs(
    datums: list[types.Datum], output: types.ForwardBackwardOutput, repeats: int
) -> dict[str, dict[str, float]]:
    """Per wire: ms to encode the request and to decode the result in this process, and their sizes."""
    fwd = types.ForwardBackwardInput(data=datums, loss_fn="cross_entropy")
    request = types.ForwardBackwardRequest(forward_backward_input=fwd, model_id="bench", seq_id=1)
    costs = {}
    for wire in WIRES:
        request_raw, output_raw = _request_bytes(wire, request), _output_bytes(wire, output)
        costs[wire] = {
            "encode_request_ms": _best_ms(lambda wire=wire: _request_bytes(wire, request), repeats),
            "decode_result_ms": _best_ms(
                lambda wire=wire, raw=output_raw: _decode_output(wire, raw), repeats
            ),
            "request_bytes": len(request_raw),
            "result_bytes": len(output_raw),
        }
    return costs


def sequential_ms(call: Callable[[], object], calls: int) -> float:
    """Median wall time of one call, each call waiting for the previous one's result."""
    call()  # warm
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_case(
    services: dict[str, Any],
    server: common.ServerHandle,
    case: TrainCase,
    trainer: InProcessTrainer,
    rounds: int,
    steps: int,
) -> dict[str, Any]:
    batch = SyntheticBatch.make(case.batch, case.length, common.vocab_size())
    datums, tensors = batch.datums(case.loss_fn), trainer.tensors(batch)
    clients = {
        wire: service.create_training_client(common.BASE_MODEL, types.LoraConfig(rank=case.lora_rank))
        for wire, service in services.items()
    }
    meters = {wire: common.CpuMeter(server.pid) for wire in WIRES}
    sides: dict[str, Callable[[], float]] = {
        "in_process": lambda: float(np.median(trainer.step_times(tensors, case.loss_fn, steps))),
        **{
            wire: lambda wire=wire: float(
                np.median(pipelined_step_times(clients[wire], datums, case.loss_fn, steps, meters[wire]))
            )
            for wire in WIRES
        },
    }
    per_round = common.interleaved(rounds, sides)

    one_pass = forward_backward_in_process(trainer, batch)
    call_sides: dict[str, Callable[[], float]] = {
        "in_process": lambda: sequential_ms(one_pass, SEQUENTIAL_CALLS),
        **{
            wire: lambda wire=wire: sequential_ms(
                lambda: clients[wire].forward_backward(datums, case.loss_fn).result(),  # type: ignore[arg-type]
                SEQUENTIAL_CALLS,
            )
            for wire in WIRES
        },
    }
    per_call = common.interleaved(rounds, call_sides)
    trainer.optimizer.zero_grad(set_to_none=True)  # the sequential passes accumulated gradients

    output = clients["protobuf"].forward(datums, case.loss_fn).result()  # type: ignore[arg-type]
    timed_steps = rounds * steps
    result: dict[str, Any] = {
        "case": case.__dict__ | {"model": case.model, "tokens_per_step": case.tokens},
        "in_process_ms_per_step": common.Spread.of(per_round["in_process"]).scaled(1e3).as_dict(),
        "codec": codec_costs(datums, output, repeats=3 if case.tokens < 1000 else 10),
        "rounds": rounds,
        "steps_per_round": steps,
    }
    for wire in WIRES:
        server_cpu = meters[wire].server_cpu
        overheads = [1e3 * (a - b) for a, b in zip(per_call[wire], per_call["in_process"], strict=True)]
        result[wire] = {
            "ms_per_step": common.Spread.of(per_round[wire]).scaled(1e3).as_dict(),
            "throughput_ratio_over_in_process": common.ratios(
                per_round["in_process"], per_round[wire]
            ).as_dict(),
            "call_overhead_ms": common.Spread.of(overheads).as_dict(),
            "client_cpu_ms_per_step": 1e3 * meters[wire].client_cpu / timed_steps,
            "server_cpu_ms_per_step": None if server_cpu is None else 1e3 * server_cpu / timed_steps,
        }
    result["throughput_ratio_protobuf_over_json"] = common.ratios(
        per_round["json"], per_round["protobuf"]
    ).as_dict()
    return result


def tables(
    results: list[dict[str, Any]], settings: common.BenchSettings, rounds: int, steps: int
) -> list[common.Table]:
    throughput = common.Table(
        f"Training over the two wires vs in-process PyTorch: forward_backward + optim_step, pipelined "
        f"({settings.threads} torch threads each side, median [range] over {rounds} rounds x {steps} steps)",
        [
            "model",
            "batch",
            "in-proc ms/step",
            "JSON ms/step",
            "binary ms/step",
            "ratio JSON/in-proc",
            "ratio binary/in-proc",
            "ratio binary/JSON",
        ],
        note="ratios: throughput over the wire / in-process throughput, per round (1.0 = no service overhead); "
        "binary/JSON: binary-wire throughput / JSON-wire throughput.",
    )
    overhead = common.Table(
        "Per call, per wire: a sequential forward_backward round trip beyond the same pass in-process, CPU per "
        "pipelined step, and the codec alone in this process",
        [
            "model",
            "batch",
            "wire",
            "call overhead ms",
            "client CPU ms/step",
            "server CPU ms/step",
            "encode request ms",
            "decode result ms",
            "request KB",
            "result KB",
        ],
        note="call overhead: per-round median of (round trip - in-process forward+backward); codec: fastest of "
        "several runs of encoding the forward_backward request and decoding its result.",
    )
    for r in results:
        case = r["case"]
        shape = f"{case['batch']}x{case['length']}"
        throughput.add(
            case["model"],
            shape,
            common.Spread.from_dict(r["in_process_ms_per_step"]).text(),
            common.Spread.from_dict(r["json"]["ms_per_step"]).text(),
            common.Spread.from_dict(r["protobuf"]["ms_per_step"]).text(),
            common.Spread.from_dict(r["json"]["throughput_ratio_over_in_process"]).text(2),
            common.Spread.from_dict(r["protobuf"]["throughput_ratio_over_in_process"]).text(2),
            common.Spread.from_dict(r["throughput_ratio_protobuf_over_json"]).text(2),
        )
        for wire in WIRES:
            side, codec = r[wire], r["codec"][wire]
            server_cpu = side["server_cpu_ms_per_step"]
            overhead.add(
                case["model"],
                shape,
                "binary" if wire == "protobuf" else "JSON",
                common.Spread.from_dict(side["call_overhead_ms"]).text(1),
                common.number(side["client_cpu_ms_per_step"]),
                "n/a" if server_cpu is None else common.number(server_cpu),
                common.number(codec["encode_request_ms"]),
                common.number(codec["decode_result_ms"]),
                common.number(codec["request_bytes"] / 1e3, 1),
                common.number(codec["result_bytes"] / 1e3, 1),
            )
    return [throughput, overhead]


def run(settings: common.BenchSettings, server: common.ServerHandle) -> common.BenchReport:
    from cookbook.client import connect

    cases = QUICK_CASES if settings.quick else CASES
    rounds, steps = settings.rounds_or(3), 2 if settings.quick else 6
    services = {wire: connect(server.url, wire=wire) for wire in WIRES}
    trainers: dict[int, InProcessTrainer] = {}
    results = []
    for case in cases:
        trainer = trainers.get(case.lora_rank) or trainers.setdefault(
            case.lora_rank, InProcessTrainer(case.lora_rank)
        )
        results.append(measure_case(services, server, case, trainer, rounds, steps))
    for service in services.values():
        service.close()
    return common.BenchReport("wire", tables(results, settings, rounds, steps), {"cases": results})


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
