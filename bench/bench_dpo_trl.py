"""DPO beside Hugging Face TRL: sec/step and held-out pair accuracy on the same weights, tokens and settings.

Both sides start from one SFT run of the built-in model (the DPO recipe's SFT stage on the server),
exported as a Hugging Face directory for TRL. Both train on the same token sequences (the DPO
recipe's bundled comparisons, rendered once by our dataset builder; TRL gets them as token ids, in
our batch order) with mirrored settings: full weights, fp32 (TRL's `bf16` default would autocast
even on CPU), plain sigmoid DPO with no NLL term (so the two NLL averagings, TRL's over all chosen
tokens of a batch and ours per sequence, do not enter), constant learning rate, AdamW with
Tinker's betas and no weight decay or clipping. Held-out accuracy is computed by one function
(`dpo_loss_and_metrics`: ties count one half) on the recipe's test pairs for both.

Ours runs through the client against a server child; TRL runs in this process; both use the same
torch thread count. A step's time is the median over steps after the first; rounds alternate which
side goes first and the ratio is taken per round.

    python -m bench.bench_dpo_trl [--quick] [--threads N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as `python bench/bench_dpo_trl.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import chz

from bench import common  # sets the OpenMP wait policy before anything imports torch
from cookbook.client.types import Datum

if TYPE_CHECKING:
    import torch

    from cookbook.preference import train_dpo

BETA = 0.5
LEARNING_RATE = 3e-4
PAIRS_PER_STEP = 16


@dataclass(frozen=True)
class Shape:
    sft_steps: int
    dpo_steps: int
    test_pairs: int


FULL = Shape(sft_steps=200, dpo_steps=30, test_pairs=400)
QUICK = Shape(sft_steps=5, dpo_steps=3, test_pairs=16)


@dataclass(frozen=True)
class SideResult:
    seconds_per_step: float
    accuracy: float


def recipe_cli(server_url: str, log_path: Path, shape: Shape) -> Any:
    """The DPO recipe's settings, mirrored on the TRL side below."""
    from cookbook.recipes.preference.dpo import train as dpo_recipe
    from cookbook.utils.optimizer_config import OptimizerConfig

    return dpo_recipe.CLIConfig(
        log_path=str(log_path),
        base_url=server_url,
        test_size=shape.test_pairs,
        sft=dpo_recipe.SFTStage(steps=shape.sft_steps),
        optimizer=OptimizerConfig(learning_rate=LEARNING_RATE, lr_schedule="constant"),
        dpo_beta=BETA,
        nll_coef=0.0,
        batch_size=PAIRS_PER_STEP,
        eval_every=0,
        save_every=0,
        max_steps=shape.dpo_steps,
        gold_eval=False,
    )


def trained_tail(datum: Datum) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of a datum whose weights are ones on a final span of its targets."""
    weights = datum.loss_fn_inputs["weights"].to_numpy()
    targets = datum.loss_fn_inputs["target_tokens"].to_numpy()
    sequence = [*datum.model_input.to_ints(), int(targets[-1])]
    first = int(weights.nonzero()[0][0])
    if not (weights[first:] == 1).all():
        raise ValueError("TRL trains one completion span: the weights must be ones on a final span")
    return sequence[: first + 1], sequence[first + 1 :]


def trl_rows(data: list[Datum]) -> list[dict[str, list[int]]]:
    """[chosen, rejected, ...] datums as TRL's tokenized rows (a pair shares its prompt)."""
    rows = []
    for chosen, rejected in zip(data[0::2], data[1::2], strict=True):
        prompt, chosen_ids = trained_tail(chosen)
        rejected_prompt, rejected_ids = trained_tail(rejected)
        if prompt != rejected_prompt:
            raise ValueError("a pair's chosen and rejected answers must follow the same prompt")
        rows.append({"prompt_ids": prompt, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
    return rows


# -- ours --------------------------------------------------------------------------------------


def run_ours(config: train_dpo.Config) -> SideResult:
    from cookbook.preference import train_dpo

    asyncio.run(train_dpo.main_async(config))
    rows = [json.loads(line) for line in (Path(config.log_path) / "metrics.jsonl").read_text().splitlines()]
    steps = [r["time/total"] for r in rows if "dpo_loss" in r]
    accuracy = next(r["test/accuracy"] for r in reversed(rows) if "test/accuracy" in r)
    return SideResult(statistics.median(steps[1:] or steps), float(accuracy))


# -- TRL ---------------------------------------------------------------------------------------


def completion_sums(model: torch.nn.Module, rows: list[dict[str, list[int]]]) -> torch.Tensor:
    """[chosen_0, rejected_0, ...] summed completion logprobs, one sequence at a time."""
    import torch

    sums = []
    with torch.no_grad():
        for row in rows:
            for answer in (row["chosen_ids"], row["rejected_ids"]):
                ids = torch.tensor([row["prompt_ids"] + answer])
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
                picked = logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
                sums.append(picked[len(row["prompt_ids"]) - 1 :].sum())
    return torch.stack(sums)


def run_trl(
    model_dir: Path,
    train: list[dict[str, list[int]]],
    test: list[dict[str, list[int]]],
    steps: int,
    out: Path,
) -> SideResult:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from cookbook.preference.dpo_loss import dpo_loss_and_metrics

    class InOrder(DPOTrainer):
        """Our batch order (the rows are already shuffled as our loop's epoch 0)."""

        def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler:
            return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self.start)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=PAIRS_PER_STEP,
        max_steps=steps,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        warmup_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        max_grad_norm=0.0,
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=None,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=steps,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    text = {"prompt": ["a"], "chosen": [" b"], "rejected": [" c"]}  # replaced by our tokens below
    timer = StepTimes()
    trainer = InOrder(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_dict(text),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train_dataset = datasets.Dataset.from_list(train)
    trainer.train()
    policy = completion_sums(trainer.model.eval(), test)
    reference = completion_sums(trainer.ref_model.eval(), test)
    _, metrics = dpo_loss_and_metrics(policy, reference, BETA)
    return SideResult(statistics.median(timer.times[1:] or timer.times), metrics["accuracy"])


# -- the bench ---------------------------------------------------------------------------------


def run(settings: common.BenchSettings, server: common.ServerHandle) -> common.BenchReport:
    from cookbook.export import export_checkpoint
    from cookbook.recipes.preference.dpo import train as dpo_recipe
    from cookbook.supervised import train as supervised_train

    shape = QUICK if settings.quick else FULL
    rounds = settings.rounds_or(2)
    with tempfile.TemporaryDirectory(prefix="bench-dpo-trl-") as tmp_name:
        tmp = Path(tmp_name)
        cli = recipe_cli(server.url, tmp / "recipe", shape)
        sft = supervised_train.main(dpo_recipe.sft_config(cli))
        if sft.sampler_path is None or sft.state_path is None:
            raise RuntimeError("the SFT stage saved no final weights")
        export_checkpoint(sft.sampler_path, tmp / "sft-hf", merged=True, base_url=server.url)
        base_config = dpo_recipe.dpo_config(cli, sft.state_path)
        train_set, test_set = base_config.dataset_builder()
        if test_set is None:
            raise RuntimeError("the recipe's comparisons have no test split")
        train_set.set_epoch(0)
        train_rows = trl_rows([d for i in range(shape.dpo_steps) for d in train_set.get_batch(i)])
        test_rows = trl_rows([d for i in range(len(test_set)) for d in test_set.get_batch(i)])

        results: dict[str, list[SideResult]] = {"ours": [], "trl": []}

        def ours() -> float:
            config = chz.replace(base_config, log_path=str(tmp / f"ours-{len(results['ours'])}"))
            results["ours"].append(run_ours(config))
            return results["ours"][-1].seconds_per_step

        def trl() -> float:
            out = tmp / f"trl-{len(results['trl'])}"
            results["trl"].append(run_trl(tmp / "sft-hf", train_rows, test_rows, shape.dpo_steps, out))
            return results["trl"][-1].seconds_per_step

        times = common.interleaved(rounds, {"ours": ours, "trl": trl})
    step_ratio = common.ratios(times["ours"], times["trl"])
    table = common.Table(
        f"DPO beside TRL {getattr(__import__('trl'), '__version__', '?')}: {shape.dpo_steps} steps of "
        f"{PAIRS_PER_STEP} pairs from one SFT checkpoint ({shape.sft_steps} steps), fp32, plain DPO, "
        f"beta {BETA}; accuracy on {len(test_rows)} held-out pairs",
        ["side", "sec/step", "held-out accuracy"],
        note="ratio = ours / TRL sec/step per round (lower is better; target <= 1.2)",
    )
    for side in ("ours", "trl"):
        table.add(
            side,
            common.Spread.of(times[side]).text(3),
            common.Spread.of([r.accuracy for r in results[side]]).text(4),
        )
    table.add("ratio", step_ratio.text(2), "")
    return common.BenchReport(
        "dpo_trl",
        [table],
        {
            "shape": shape.__dict__,
            "seconds_per_step": {side: common.Spread.of(times[side]).as_dict() for side in times},
            "accuracy": {side: [r.accuracy for r in results[side]] for side in results},
            "ratio": step_ratio.as_dict(),
            "nll_term": "none (plain DPO): the NLL averagings do not enter",
        },
    )


def main(argv: list[str] | None = None) -> int:
    return common.run_cli(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
