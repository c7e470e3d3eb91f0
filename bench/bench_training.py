"""Training throughput: forward_backward + optim_step through the client over HTTP vs in-process PyTorch.

HTTP: a training client on a real server process, pipelined as a training loop is (step k+1 is
submitted before step k's results are read); a step's time is the interval between consecutive
completed steps. In-process: plain PyTorch on an identical LlamaForCausalLM (same config, seed,
dtype and LoRA placement), `torch.optim.AdamW` with the same settings and the same summed
token-level loss, on tensors built once. The ratio is in-process time / HTTP time, i.e. the
fraction of in-process throughput the service delivers.

    python -m bench.bench_training [--quick] [--threads N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as `python bench/bench_training.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common  # sets the OpenMP wait policy before anything imports torch
from cookbook.client import types

if TYPE_CHECKING:
    import torch

    from cookbook.client.abstract import ServiceClient, TrainingClient

# Tinker's AdamW defaults (betas 0.9/0.95, eps 1e-12, no weight decay, no clipping).
ADAM = types.AdamParams(learning_rate=1e-4)
WARMUP_STEPS = 2


@dataclass(frozen=True)
class TrainCase:
    lora_rank: int  # 0 = full-weight training
    batch: int
    length: int
    loss_fn: str

    @property
    def model(self) -> str:
        return "full" if self.lora_rank == 0 else f"lora r{self.lora_rank}"

    @property
    def shape(self) -> str:
        return f"{self.batch}x{self.length}"

    @property
    def tokens(self) -> int:
        return self.batch * self.length


SHAPES = ((32, 64, "cross_entropy"), (64, 128, "cross_entropy"), (64, 64, "importance_sampling"))
CASES = tuple(TrainCase(rank, b, t, loss) for rank in (0, 8) for b, t, loss in SHAPES)
QUICK_CASES = (TrainCase(0, 2, 16, "cross_entropy"), TrainCase(8, 2, 16, "importance_sampling"))


# -- the data ----------------------------------------------------------------------------------


@dataclass
class SyntheticBatch:
    """Random sequences with the loss inputs a real SFT or RL step would carry, as arrays [B, T]."""

    inputs: np.ndarray  # int64
    targets: np.ndarray  # int64
    weights: np.ndarray  # float32: cross_entropy
    logprobs: np.ndarray  # float32: the sampler's logprobs (importance_sampling)
    advantages: np.ndarray  # float32: per sequence on its second half, 0 on the "prompt"

    @classmethod
    def make(cls, batch: int, length: int, vocab_size: int, seed: int = 0) -> SyntheticBatch:
        rng = np.random.default_rng(seed)
        tokens = rng.integers(1, vocab_size, size=(batch, length + 1), dtype=np.int64)
        answer = np.zeros((batch, length), dtype=np.float32)
        answer[:, length // 2 :] = 1.0
        return cls(
            inputs=tokens[:, :-1],
            targets=tokens[:, 1:],
            weights=answer,
            logprobs=(-np.log(vocab_size) + 0.1 * rng.standard_normal((batch, length))).astype(np.float32),
            advantages=(rng.standard_normal((batch, 1)) * answer).astype(np.float32),
        )

    def datums(self, loss_fn: str) -> list[types.Datum]:
        data = []
        for row in range(self.inputs.shape[0]):
            loss_inputs: dict[str, Any] = {"target_tokens": types.TensorData.from_numpy(self.targets[row])}
            if loss_fn == "cross_entropy":
                loss_inputs["weights"] = types.TensorData.from_numpy(self.weights[row])
            else:
                loss_inputs["logprobs"] = types.TensorData.from_numpy(self.logprobs[row])
                loss_inputs["advantages"] = types.TensorData.from_numpy(self.advantages[row])
            data.append(
                types.Datum(
                    model_input=types.ModelInput.from_ints(self.inputs[row].tolist()),
                    loss_fn_inputs=loss_inputs,
                )
            )
        return data


# -- in-process PyTorch ------------------------------------------------------------------------


class InProcessTrainer:
    """The baseline: the same model, optimizer and loss as the server, in plain PyTorch."""

    def __init__(self, lora_rank: int):
        import torch

        from server_stub.models.lora_hub import LoraSpec
        from server_stub.models.tiny_llama import TINY_LLAMA_NAME, build_tiny_llama

        model = build_tiny_llama(torch.device("cpu"), torch.float32)
        if lora_rank == 0:
            model.requires_grad_(True)
        else:
            from peft import get_peft_model

            model.requires_grad_(False)
            with (
                warnings.catch_warnings()
            ):  # peft warns about LoRA on a tied lm_head, as the server's hub does
                warnings.simplefilter("ignore")
                model = get_peft_model(model, LoraSpec(rank=lora_rank).peft_config(TINY_LLAMA_NAME))
        self.model = model
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params,
            lr=ADAM.learning_rate,
            betas=(ADAM.beta1, ADAM.beta2),
            eps=ADAM.eps,
            weight_decay=ADAM.weight_decay,
        )

    def tensors(self, batch: SyntheticBatch) -> dict[str, torch.Tensor]:
        import torch

        return {
            name: torch.from_numpy(np.ascontiguousarray(getattr(batch, name)))
            for name in ("inputs", "targets", "weights", "logprobs", "advantages")
        }

    def step(self, data: dict[str, torch.Tensor], loss_fn: str) -> torch.Tensor:
        """One forward_backward + optim_step; returns the target logprobs, as the server does."""
        import torch
        import torch.nn.functional as F

        logits = self.model(input_ids=data["inputs"], use_cache=False).logits
        logprobs = -F.cross_entropy(
            logits.flatten(0, 1).float(), data["targets"].flatten(), reduction="none"
        ).view_as(data["targets"])
        if loss_fn == "cross_entropy":
            loss = -(data["weights"] * logprobs).sum()
        else:
            loss = -(torch.exp(logprobs - data["logprobs"]) * data["advantages"]).sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return logprobs.detach().cpu()

    def step_times(self, data: dict[str, torch.Tensor], loss_fn: str, steps: int) -> list[float]:
        for _ in range(WARMUP_STEPS):
            self.step(data, loss_fn)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.step(data, loss_fn)
            times.append(time.perf_counter() - start)
        return times


# -- through the client ------------------------------------------------------------------------


def pipelined_step_times(
    client: TrainingClient,
    data: list[types.Datum],
    loss_fn: str,
    steps: int,
    meter: common.CpuMeter | None = None,
) -> list[float]:
    """Run warmup + `steps` steps keeping one step queued ahead; the intervals between finished steps.

    `meter`, if given, measures wall and CPU over the timed steps only.
    """
    pending: tuple[Any, Any] | None = None
    finished: list[float] = []
    total = WARMUP_STEPS + steps
    for index in range(total + 1):
        submitted = None
        if index < total:
            submitted = (client.forward_backward(data, loss_fn), client.optim_step(ADAM))  # type: ignore[arg-type]
        if pending is not None:
            pending[0].result()
            pending[1].result()
            finished.append(time.perf_counter())
            if meter is not None and len(finished) == WARMUP_STEPS:
                meter.start()
        pending = submitted
    if meter is not None:
        meter.stop()
    return list(np.diff(finished[WARMUP_STEPS - 1 :]))


# -- the bench ---------------------------------------------------------------------------------


def measure_case(
    service: ServiceClient,
    server: common.ServerHandle,
    case: TrainCase,
    trainer: InProcessTrainer,
    rounds: int,
    steps: int,
) -> dict[str, Any]:
    batch = SyntheticBatch.make(case.batch, case.length, common.vocab_size())
    datums, tensors = batch.datums(case.loss_fn), trainer.tensors(batch)
    client = service.create_training_client(common.BASE_MODEL, types.LoraConfig(rank=case.lora_rank))
    meter = common.CpuMeter(server.pid)
    per_round = common.interleaved(
        rounds,
        {
            "http": lambda: float(
                np.median(pipelined_step_times(client, datums, case.loss_fn, steps, meter))
            ),
            "in_process": lambda: float(np.median(trainer.step_times(tensors, case.loss_fn, steps))),
        },
    )
    http, local = common.Spread.of(per_round["http"]), common.Spread.of(per_round["in_process"])
    timed_steps = rounds * steps
    return {
        "case": case.__dict__ | {"model": case.model, "tokens_per_step": case.tokens},
        "http_ms_per_step": http.scaled(1e3).as_dict(),
        "in_process_ms_per_step": local.scaled(1e3).as_dict(),
        "http_tokens_per_s": case.tokens / http.median,
        "in_process_tokens_per_s": case.tokens / local.median,
        "throughput_ratio_http_over_in_process": common.ratios(
            per_round["in_process"], per_round["http"]
        ).as_dict(),
        "client_cpu_ms_per_step": 1e3 * meter.client_cpu / timed_steps,
        "server_cpu_ms_per_step": None if meter.server_cpu is None else 1e3 * meter.server_cpu / timed_steps,
        "rounds": rounds,
        "steps_per_round": steps,
    }


def run(settings: common.BenchSettings, server: common.ServerHandle) -> common.BenchReport:
    from cookbook.client import connect

    cases = QUICK_CASES if settings.quick else CASES
    rounds, steps = settings.rounds_or(3), 2 if settings.quick else 6
    service = connect(server.url)
    trainers: dict[int, InProcessTrainer] = {}
    results = []
    for case in cases:
        trainer = trainers.get(case.lora_rank) or trainers.setdefault(
            case.lora_rank, InProcessTrainer(case.lora_rank)
        )
        results.append(measure_case(service, server, case, trainer, rounds, steps))
    service.close()
    table = common.Table(
        f"Training: forward_backward + optim_step, HTTP (pipelined) vs in-process PyTorch "
        f"({settings.threads} torch threads each side, median [range] over {rounds} rounds x {steps} steps)",
        [
            "model",
            "batch",
            "loss",
            "HTTP ms/step",
            "in-proc ms/step",
            "HTTP tok/s",
            "in-proc tok/s",
            "ratio HTTP/in-proc",
            "client CPU ms/step",
            "server CPU ms/step",
        ],
        note="ratio: HTTP throughput / in-process throughput, per round (1.0 = no service overhead).",
    )
    for r in results:
        case = r["case"]
        server_cpu = r["server_cpu_ms_per_step"]
        table.add(
            case["model"],
            f"{case['batch']}x{case['length']}",
            case["loss_fn"],
            common.Spread.from_dict(r["http_ms_per_step"]).text(),
            common.Spread.from_dict(r["in_process_ms_per_step"]).text(),
            common.number(r["http_tokens_per_s"], 0),
            common.number(r["in_process_tokens_per_s"], 0),
            common.Spread.from_dict(r["throughput_ratio_http_over_in_process"]).text(2),
            common.number(r["client_cpu_ms_per_step"]),
            "n/a" if server_cpu is None else common.number(server_cpu),
        )
    return common.BenchReport("training", [table], {"cases": results})


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
