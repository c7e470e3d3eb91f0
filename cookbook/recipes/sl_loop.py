"""Supervised fine-tuning as one loop in one file: the starting point for a custom SFT recipe.

    python -m cookbook.recipes.sl_loop                       # bundled local server, tiny-llama, bundled chat data
    python -m cookbook.recipes.sl_loop max_steps=20 log_path=/tmp/sl-loop
    python -m cookbook.recipes.sl_loop base_url=http://gpu-box:8000 model_name=... dataset=HuggingFaceH4/no_robots

Read it top to bottom: chat rows are rendered into Datums, each step submits forward_backward and
optim_step for the next batch before reading the previous one's results (so the server never waits
for us), the learning rate decays linearly to zero, every step appends a line to
`<log_path>/metrics.jsonl`, the held-out split is scored every `eval_every` steps and at the end
(`test/nll`), and the final weights are saved and their paths printed. Only the client API and
the data and chat-format helpers are used. Running it again starts over; `cookbook.recipes.sl_basic`
is the same training on the shared loop, which adds warm-up, periodic checkpoints and resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chz
from tqdm import tqdm

from cookbook.client import AdamParams, APIFuture, Datum, ForwardBackwardOutput, TrainingClient, connect
from cookbook.client.types import OptimStepResponse
from cookbook.model_config import BUILTIN_MODEL_NAME, get_recommended_lora_rank, get_recommended_renderer_name
from cookbook.recipes.chat_sl.chat_datasets import load_chat_split
from cookbook.renderers import Renderer, TrainOnWhat, get_renderer
from cookbook.supervised.common import NoTrainedTokensError, compute_mean_nll
from cookbook.supervised.data import conversation_to_datum
from cookbook.utils.plotting import plot_metrics


@chz.chz
class Config:
    log_path: str = "/tmp/cookbook-runs/sl_loop"
    base_url: str | None = None  # None: start the bundled local server
    model_name: str = BUILTIN_MODEL_NAME
    dataset: str = "bundled"  # or a hub id / local file or directory in the no_robots schema
    lora_rank: int | None = None  # None: full weights for tiny-llama, LoRA rank 32 otherwise
    batch_size: int = 32
    max_length: int = 128
    learning_rate: float = 3e-3
    grad_clip_norm: float = 1.0
    num_epochs: int = 3
    eval_every: int = 50  # test/nll every this many steps (0: only before and after training)
    max_steps: int | None = None  # None: num_epochs passes over the training split


def render(rows: Sequence[dict[str, Any]], renderer: Renderer, max_length: int) -> list[Datum]:
    """Conversations as Datums that train on the assistant's turns (rows with nothing left to train are dropped)."""
    datums_D = []
    for row in rows:
        try:
            datums_D.append(
                conversation_to_datum(
                    row["messages"], renderer, max_length, TrainOnWhat.ALL_ASSISTANT_MESSAGES
                )
            )
        except NoTrainedTokensError:  # truncation cut the whole answer off
            continue
    return datums_D


def evaluate_nll(training_client: TrainingClient, datums_D: list[Datum], batch_size: int) -> float:
    """test/nll: `forward` scores the data without touching the gradients, behind every step already sent."""
    chunks = [datums_D[i : i + batch_size] for i in range(0, len(datums_D), batch_size)]
    futures = [training_client.forward(chunk, "cross_entropy") for chunk in chunks]
    outputs = [future.result() for future in futures]
    logprobs_D = [out["logprobs"] for output in outputs for out in output.loss_fn_outputs]
    return compute_mean_nll(logprobs_D, [datum.loss_fn_inputs["weights"] for datum in datums_D])


def main(config: Config) -> str:
    log_dir = Path(config.log_path)
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "config.json").write_text(json.dumps(chz.asdict(config), indent=2))

    service = connect(config.base_url)
    lora_rank = (
        config.lora_rank if config.lora_rank is not None else get_recommended_lora_rank(config.model_name)
    )
    training_client = service.create_lora_training_client(config.model_name, rank=lora_rank)
    tokenizer = training_client.get_tokenizer()
    renderer = get_renderer(get_recommended_renderer_name(config.model_name, tokenizer), tokenizer)

    train_rows = load_chat_split(config.dataset, "train").shuffle(seed=0)
    test_datums_D = render(load_chat_split(config.dataset, "test"), renderer, config.max_length)
    n_batches = len(train_rows) // config.batch_size  # a smaller last batch would make a noisier step
    if n_batches == 0:
        raise ValueError(f"batch_size={config.batch_size} is more than the {len(train_rows)} training rows")
    num_steps = config.max_steps if config.max_steps is not None else config.num_epochs * n_batches

    with (log_dir / "metrics.jsonl").open("w") as metrics_file:
        progress = tqdm(
            range(num_steps), desc="sl_loop", disable=None
        )  # disable=None: a bar only on a terminal

        def log(step: int, metrics: dict[str, float]) -> None:
            metrics_file.write(json.dumps({"step": step, **metrics}) + "\n")
            metrics_file.flush()  # a killed run keeps every step it logged

        def finish(
            step: int,
            learning_rate: float,
            datums_D: list[Datum],
            fwd_bwd_future: APIFuture[ForwardBackwardOutput],
            optim_future: APIFuture[OptimStepResponse],
            submitted_at: float,
        ) -> None:
            """Wait for a submitted step and log it (this is where the loop waits, if it waits at all)."""
            output, optim_response = fwd_bwd_future.result(), optim_future.result()
            logprobs_D = [out["logprobs"] for out in output.loss_fn_outputs]
            train_nll = compute_mean_nll(logprobs_D, [datum.loss_fn_inputs["weights"] for datum in datums_D])
            log(
                step,
                {
                    "train_mean_nll": train_nll,
                    "learning_rate": learning_rate,
                    "num_sequences": len(datums_D),
                    "num_tokens": sum(datum.model_input.length for datum in datums_D),
                    **{f"optim/{key}": value for key, value in (optim_response.metrics or {}).items()},
                    "time/total": time.time() - submitted_at,
                },
            )
            progress.set_postfix(train_mean_nll=f"{train_nll:.3f}")

        in_flight = None  # the previous step, whose results we read while this one runs
        for step in progress:
            if step == 0 or (config.eval_every > 0 and step % config.eval_every == 0):
                if in_flight is not None:  # the evaluation waits for it anyway; log it first
                    finish(*in_flight)
                    in_flight = None
                log(step, {"test/nll": evaluate_nll(training_client, test_datums_D, config.batch_size)})
            first_row = (step % n_batches) * config.batch_size
            batch_rows = train_rows.select(range(first_row, first_row + config.batch_size))
            datums_D = render(batch_rows, renderer, config.max_length)
            learning_rate = config.learning_rate * (1.0 - step / num_steps)  # linear decay to zero
            adam_params = AdamParams(learning_rate=learning_rate, grad_clip_norm=config.grad_clip_norm)
            # Both calls return futures at once; the server queues them behind the previous step.
            fwd_bwd_future = training_client.forward_backward(datums_D, "cross_entropy")
            optim_future = training_client.optim_step(adam_params)
            if in_flight is not None:
                finish(*in_flight)
            in_flight = (step, learning_rate, datums_D, fwd_bwd_future, optim_future, time.time())
        if in_flight is not None:
            finish(*in_flight)
        test_nll = evaluate_nll(training_client, test_datums_D, config.batch_size)
        log(num_steps, {"test/nll": test_nll})

    state_path = training_client.save_state("final").result().path
    sampler_path = training_client.save_weights_for_sampler("final").result().path
    # One line in the format of the shared loops' checkpoints.jsonl, so their tools find these weights.
    record = {
        "name": "final",
        "batch": num_steps,
        "final": True,
        "state_path": state_path,
        "sampler_path": sampler_path,
    }
    (log_dir / "checkpoints.jsonl").write_text(json.dumps(record) + "\n")
    plot_path = plot_metrics(log_dir, keys=["train_mean_nll", "test/nll", "learning_rate"])
    service.close()

    print(f"test/nll {test_nll:.3f} after {num_steps} steps")
    print(f"final weights: {state_path}")
    print(f"for sampling:  {sampler_path}")
    print(f"curves:        {plot_path}")
    return state_path


if __name__ == "__main__":
    chz.nested_entrypoint(main)
