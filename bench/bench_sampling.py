"""Sampling throughput: the server's sampler through the client vs Hugging Face `generate` in-process.

Both sides sample the same weights (the built-in model is built from a fixed seed) for the same
prompts: B distinct prompts of 20 tokens, temperature 1, no top-k/top-p, `max_tokens` new tokens.
The client makes one request per prompt, all in flight at once (as an RL rollout makes them), which
it sends to the server together (`asample_batch`) and the server batches; `generate` gets the B
prompts as one batch. Both stop a row at EOS (which the
server always does), so throughput counts the tokens actually generated, EOS included; with the
random-init model EOS is rare and rows almost always run to `max_tokens`.

With `--smollm2` the same comparison also runs on SmolLM2-135M-Instruct (the GGUF of
`bench/smollm2.py`, served as "smollm2" in fp32; `generate` gets transformers' own load of the same
file), in the same run and on the same server, its prompts drawn from above the special tokens.

A second table compares N concurrent 1-sample requests with one request for N samples of the same
prompt: the same rows to decode, so any gap is per-request cost (encoding, batching, prefill), with
the client's and the server's CPU per request alongside.

    python -m bench.bench_sampling [--quick] [--smollm2] [--threads N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as `python bench/bench_sampling.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common  # sets the OpenMP wait policy before anything imports torch
from cookbook.client import types

if TYPE_CHECKING:
    import torch

    from cookbook.client.abstract import SamplingClient

PROMPT_LENGTH = 20
CASES = ((4, 32), (4, 64), (16, 32), (16, 64), (64, 32), (64, 64))  # (prompts, new tokens)
QUICK_CASES = ((2, 4),)
SMOLLM2_CASES = ((4, 32), (16, 32))
QUICK_SMOLLM2_CASES = ((2, 4),)
CONCURRENCY = ((8, 64), (32, 64))  # (N requests or samples, new tokens)
QUICK_CONCURRENCY = ((2, 4),)
SMOLLM2_NAME = "smollm2"
SMOLLM2_FIRST_PLAIN_TOKEN = 100  # SmolLM2's special tokens (EOS and chat markers) all lie below this


@dataclass(frozen=True)
class Model:
    """A served model and the range its random prompts are drawn from."""

    name: str
    first_token: int
    vocab_size: int


def prompts(count: int, model: Model, seed: int = 0) -> list[list[int]]:
    """Random prompts that avoid the model's EOS and special tokens."""
    rng = np.random.default_rng(seed)
    return rng.integers(model.first_token, model.vocab_size, size=(count, PROMPT_LENGTH)).tolist()


def sampling_params(new_tokens: int) -> types.SamplingParams:
    return types.SamplingParams(max_tokens=new_tokens, temperature=1.0, top_k=-1, top_p=1.0)


# -- the two samplers --------------------------------------------------------------------------


class HfGenerate:
    """The baseline: transformers' `generate` on an identical model in this process."""

    def __init__(self, model: torch.nn.Module, eos: tuple[int, ...]):
        self.model = model
        self.eos = eos

    @classmethod
    def builtin(cls) -> HfGenerate:
        import torch

        from server_stub.models.tiny_llama import TINY_LLAMA_EOS_ID, build_tiny_llama

        return cls(build_tiny_llama(torch.device("cpu"), torch.float32), (TINY_LLAMA_EOS_ID,))

    @classmethod
    def smollm2(cls) -> HfGenerate:
        """transformers' own fp32 load of the GGUF the server serves."""
        import torch
        from transformers import AutoModelForCausalLM

        from bench.smollm2 import smollm2_gguf

        gguf = smollm2_gguf()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        eos = model.generation_config.eos_token_id
        return cls(model.eval(), tuple(eos) if isinstance(eos, list) else (int(eos),))

    def tokens_and_seconds(self, batch: list[list[int]], new_tokens: int) -> tuple[int, float]:
        """Generated tokens (up to and including each row's EOS) and wall seconds for one batch."""
        import torch

        ids = torch.tensor(batch, dtype=torch.int64)
        start = time.perf_counter()
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=new_tokens,
                min_new_tokens=0,
                eos_token_id=list(self.eos),
                pad_token_id=self.eos[0],
            )
        seconds = time.perf_counter() - start
        return sum(_length_to_eos(row, self.eos) for row in out[:, ids.shape[1] :].tolist()), seconds


def _length_to_eos(row: list[int], eos: tuple[int, ...]) -> int:
    return next((i + 1 for i, token in enumerate(row) if token in eos), len(row))


def server_tokens_and_seconds(
    client: SamplingClient, batch: list[list[int]], new_tokens: int, meter: common.CpuMeter | None = None
) -> tuple[int, float]:
    """Generated tokens and wall seconds for one request per prompt, all in flight together."""
    params = sampling_params(new_tokens)
    if meter is not None:
        meter.start()
    start = time.perf_counter()
    futures = [client.sample(types.ModelInput.from_ints(p), 1, params) for p in batch]
    responses = [f.result() for f in futures]
    seconds = time.perf_counter() - start
    if meter is not None:
        meter.stop()
    return sum(len(seq.tokens) for r in responses for seq in r.sequences), seconds


def one_request_seconds(
    client: SamplingClient,
    prompt: list[int],
    samples: int,
    new_tokens: int,
    meter: common.CpuMeter | None = None,
) -> float:
    if meter is not None:
        meter.start()
    start = time.perf_counter()
    client.sample(types.ModelInput.from_ints(prompt), samples, sampling_params(new_tokens)).result()
    seconds = time.perf_counter() - start
    if meter is not None:
        meter.stop()
    return seconds


# -- the bench ---------------------------------------------------------------------------------


def _sample_throughput(
    client: SamplingClient, hf: HfGenerate, model: Model, batch_size: int, new_tokens: int, rounds: int
) -> dict[str, Any]:
    batch = prompts(batch_size, model, seed=batch_size * 1000 + new_tokens)
    server_tokens_and_seconds(client, batch, new_tokens)  # warm up both sides
    hf.tokens_and_seconds(batch, new_tokens)
    counts: dict[str, list[int]] = {"server": [], "hf_generate": []}

    def side(name: str, fn: Any) -> Any:
        def measure() -> float:
            tokens, seconds = fn(batch, new_tokens)
            counts[name].append(tokens)
            return tokens / seconds

        return measure

    per_round = common.interleaved(
        rounds,
        {
            "server": side("server", lambda b, n: server_tokens_and_seconds(client, b, n)),
            "hf_generate": side("hf_generate", hf.tokens_and_seconds),
        },
    )
    return {
        "model": model.name,
        "prompts": batch_size,
        "new_tokens": new_tokens,
        "prompt_length": PROMPT_LENGTH,
        "server_tokens_per_s": common.Spread.of(per_round["server"]).as_dict(),
        "hf_generate_tokens_per_s": common.Spread.of(per_round["hf_generate"]).as_dict(),
        "throughput_ratio_server_over_hf": common.ratios(
            per_round["server"], per_round["hf_generate"]
        ).as_dict(),
        "mean_tokens_per_row": {k: float(np.mean(v)) / batch_size for k, v in counts.items()},
        "rounds": rounds,
    }


def _concurrency(
    client: SamplingClient, server: common.ServerHandle, samples: int, new_tokens: int, rounds: int
) -> dict[str, Any]:
    prompt = prompts(1, Model(common.BASE_MODEL, 1, common.vocab_size()), seed=7)[0]
    meters = {"concurrent": common.CpuMeter(server.pid), "one_request": common.CpuMeter(server.pid)}
    one_request_seconds(client, prompt, samples, new_tokens)  # warm up
    per_round = common.interleaved(
        rounds,
        {
            "concurrent": lambda: server_tokens_and_seconds(
                client, [prompt] * samples, new_tokens, meters["concurrent"]
            )[1],
            "one_request": lambda: one_request_seconds(
                client, prompt, samples, new_tokens, meters["one_request"]
            ),
        },
    )
    cpu: dict[str, Any] = {}
    for name, meter in meters.items():
        cpu[f"{name}_client_cpu_ms"] = 1e3 * meter.client_cpu / rounds
        cpu[f"{name}_server_cpu_ms"] = None if meter.server_cpu is None else 1e3 * meter.server_cpu / rounds
    # What each extra request costs: the same rows either way, so the difference is per-request work.
    cpu["extra_client_cpu_ms_per_request"] = (
        cpu["concurrent_client_cpu_ms"] - cpu["one_request_client_cpu_ms"]
    ) / samples
    cpu["extra_server_cpu_ms_per_request"] = (
        None
        if cpu["concurrent_server_cpu_ms"] is None
        else (cpu["concurrent_server_cpu_ms"] - cpu["one_request_server_cpu_ms"]) / samples
    )
    return {
        "samples": samples,
        "new_tokens": new_tokens,
        "concurrent_ms": _ms(per_round["concurrent"]),
        "one_request_ms": _ms(per_round["one_request"]),
        "time_ratio_concurrent_over_one": common.ratios(
            per_round["concurrent"], per_round["one_request"]
        ).as_dict(),
        **cpu,
        "rounds": rounds,
    }


def _ms(seconds: list[float]) -> dict[str, float]:
    return common.Spread.of([1e3 * s for s in seconds]).as_dict()


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else common.number(value)


def run(
    settings: common.BenchSettings, server: common.ServerHandle, smollm2: bool = False
) -> common.BenchReport:
    from cookbook.client import connect

    rounds = settings.rounds_or(4)
    service = connect(server.url)
    client = service.create_sampling_client(base_model=common.BASE_MODEL)
    builtin = Model(common.BASE_MODEL, 1, common.vocab_size())
    hf = HfGenerate.builtin()
    throughput = [
        _sample_throughput(client, hf, builtin, b, n, rounds)
        for b, n in (QUICK_CASES if settings.quick else CASES)
    ]
    if smollm2:
        hf = HfGenerate.smollm2()
        served = Model(SMOLLM2_NAME, SMOLLM2_FIRST_PLAIN_TOKEN, int(hf.model.config.vocab_size))
        smollm2_client = service.create_sampling_client(base_model=SMOLLM2_NAME)
        throughput += [
            _sample_throughput(smollm2_client, hf, served, b, n, rounds)
            for b, n in (QUICK_SMOLLM2_CASES if settings.quick else SMOLLM2_CASES)
        ]
        del hf
    concurrency = [
        _concurrency(client, server, n, t, rounds)
        for n, t in (QUICK_CONCURRENCY if settings.quick else CONCURRENCY)
    ]
    service.close()

    speed = common.Table(
        f"Sampling: server sampler over HTTP (one request per prompt, concurrent) vs HF generate in-process "
        f"({settings.threads} torch threads each side, {PROMPT_LENGTH}-token prompts, T=1, median [range] "
        f"over {rounds} rounds)",
        [
            "model",
            "prompts",
            "new tokens",
            "server tok/s",
            "HF generate tok/s",
            "ratio server/HF",
            "tokens/row server",
            "HF",
        ],
        note="tok/s counts generated tokens up to and including EOS; ratio is per round.",
    )
    for r in throughput:
        rows = r["mean_tokens_per_row"]
        speed.add(
            r["model"],
            r["prompts"],
            r["new_tokens"],
            common.Spread.from_dict(r["server_tokens_per_s"]).text(0),
            common.Spread.from_dict(r["hf_generate_tokens_per_s"]).text(0),
            common.Spread.from_dict(r["throughput_ratio_server_over_hf"]).text(2),
            common.number(rows["server"], 1),
            common.number(rows["hf_generate"], 1),
        )
    batching = common.Table(
        f"Sampling: N concurrent 1-sample requests vs one request with num_samples=N (same prompt; "
        f"median [range] over {rounds} rounds)",
        [
            "N",
            "new tokens",
            "concurrent ms",
            "one request ms",
            "ratio conc/one",
            "client CPU ms conc/one",
            "server CPU ms conc/one",
            "extra CPU ms/request client, server",
        ],
        note="CPU: per batch of N, this process (client) and the server process; extra: (concurrent - one) / N.",
    )
    for r in concurrency:
        batching.add(
            r["samples"],
            r["new_tokens"],
            common.Spread.from_dict(r["concurrent_ms"]).text(0),
            common.Spread.from_dict(r["one_request_ms"]).text(0),
            common.Spread.from_dict(r["time_ratio_concurrent_over_one"]).text(2),
            f"{common.number(r['concurrent_client_cpu_ms'])} / {common.number(r['one_request_client_cpu_ms'])}",
            f"{_cpu(r['concurrent_server_cpu_ms'])} / {_cpu(r['one_request_server_cpu_ms'])}",
            f"{common.number(r['extra_client_cpu_ms_per_request'])}, "
            f"{_cpu(r['extra_server_cpu_ms_per_request'])}",
        )
    return common.BenchReport(
        "sampling", [speed, batching], {"throughput": throughput, "concurrency": concurrency}
    )


def main(argv: list[str] | None = None) -> int:
    parser = common.build_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--smollm2",
        action="store_true",
        help="also compare on SmolLM2-135M-Instruct (a started server serves it; a --base-url one must)",
    )
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    if args.smollm2 and settings.base_url is None:
        from bench.smollm2 import smollm2_gguf

        model_flags = ("--model", f"{SMOLLM2_NAME}={smollm2_gguf()}", "--dtype", "float32")
        settings = replace(settings, server_args=(*settings.server_args, *model_flags))
    common.use_threads(settings.threads)
    with common.bench_server(settings) as server:
        report = run(settings, server, smollm2=args.smollm2)
    return common.print_and_save(settings, report)


if __name__ == "__main__":
    sys.exit(main())
