"""Reinforcement learning as one loop in one file: the starting point for a custom RL recipe.

    python -m cookbook.recipes.rl_basic                      # bundled local server, tiny-llama, bundled tasks
    python -m cookbook.recipes.rl_basic max_steps=20 log_path=/tmp/rl-basic
    python -m cookbook.recipes.rl_basic task=add load_checkpoint_path=tinker://.../weights/final

Read it top to bottom. Each step takes a sampling client of the current weights, samples a group of
answers to each of a batch of questions from the bundled chat data, scores every answer with the
bundled data's gold rule (`cookbook.data.gold_judge`: correct, complete, politely opened answers
score highest), centres the rewards within each group (an answer is good or bad only next to the
other answers to the same question), and trains on the sampled tokens with the
`importance_sampling` loss. Every step appends a line to `<log_path>/metrics.jsonl`; the end saves
the final weights and plots the curves.

RL can only prefer some answers to others: a randomly initialised model writes nothing the rule
tells apart, so every group would tie and nothing would be learned. Without `load_checkpoint_path`
the run therefore starts from `sl_loop` fine-tuned weights (in `<log_path>/sft`); that data imitates
people who are sometimes rude or wrong, which is what RL then trains away. Only the client API and
the data and chat-format helpers are used here; `cookbook.rl.train` is the full RL loop (async
rollouts, KL penalties, evaluations, checkpoints and resume).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import chz
import numpy as np
from tqdm import tqdm

from cookbook.client import AdamParams, Datum, ModelInput, SampledSequence, SamplingParams, connect
from cookbook.data import gold_judge
from cookbook.data.bundled import chat_split
from cookbook.data.tasks import task_families
from cookbook.model_config import BUILTIN_MODEL_NAME, get_recommended_renderer_name
from cookbook.recipes import sl_loop
from cookbook.renderers import Message, get_renderer
from cookbook.utils.plotting import plot_metrics


@chz.chz
class Config:
    log_path: str = "/tmp/cookbook-runs/rl_basic"
    base_url: str | None = None  # None: start the bundled local server
    model_name: str = BUILTIN_MODEL_NAME
    load_checkpoint_path: str | None = None  # weights to start from (`.../weights/<name>`); None: run sl_loop
    sft_steps: int | None = None  # sl_loop's max_steps when it runs first (None: its default)
    lora_rank: int | None = None  # sl_loop's when it runs first; a loaded checkpoint keeps its own
    task: str = "all"  # a bundled task family (add, capital, opposite, upper, repeat, count) or "all"
    batch_size: int = 16  # questions per step
    group_size: int = 8  # answers sampled per question
    max_tokens: int = 24
    temperature: float = 1.0
    learning_rate: float = 3e-4
    max_steps: int = 100
    seed: int = 0


def prompts_of(task: str) -> list[list[Message]]:
    """The bundled chat conversations of a task family (or of all), each without its final answer."""
    tasks = [family.kind for family in task_families()]
    if task not in (*tasks, "all"):
        raise ValueError(f"unknown task {task!r}; choose one of {tasks} or 'all'")
    return [row["messages"][:-1] for row in chat_split("train") if task in (row["category"], "all")]


def make_datum(prompt: ModelInput, sequence: SampledSequence, advantage: float) -> Datum:
    """One sampled answer as a training example; the prompt's positions get advantage 0, so only the answer trains."""
    if sequence.logprobs is None:
        raise ValueError("the sampler returned no logprobs, which the importance_sampling loss needs")
    prompt_T, answer_T = prompt.to_ints(), sequence.tokens
    tokens_T = prompt_T + answer_T
    n_prompt_targets = len(prompt_T) - 1  # targets are the tokens shifted by one
    return Datum(
        model_input=ModelInput.from_ints(tokens_T[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens_T[1:],
            "logprobs": [0.0] * n_prompt_targets + sequence.logprobs,  # the sampler's, for the ratio p/q
            "advantages": [0.0] * n_prompt_targets + [advantage] * len(answer_T),
        },
    )


def sampler_trainer_metrics(datums_D: list[Datum], train_logprobs_D: list[np.ndarray]) -> dict[str, float]:
    """Over the answer tokens: the sampler's entropy (-mean sampled logprob) and its KL to the trainer.

    kl_sample_train is about 0 when the sampler and the trainer compute the same distribution; a
    growing value means the training data is off-policy.
    """
    sampled_logprobs, train_logprobs = [], []
    for datum, train_logprobs_T in zip(datums_D, train_logprobs_D, strict=True):
        answer_T = datum.loss_fn_inputs["advantages"].to_numpy() != 0
        sampled_logprobs.append(datum.loss_fn_inputs["logprobs"].to_numpy()[answer_T])
        train_logprobs.append(train_logprobs_T[answer_T])
    lq, lp = np.concatenate(sampled_logprobs), np.concatenate(train_logprobs)
    return {"optim/entropy": float(-lq.mean()), "optim/kl_sample_train_v1": float((lq - lp).mean())}


def main(config: Config) -> str:
    log_dir = Path(config.log_path)
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "config.json").write_text(json.dumps(chz.asdict(config), indent=2))

    start_path = config.load_checkpoint_path
    if start_path is None:
        sft_config = sl_loop.Config(
            log_path=str(log_dir / "sft"),
            base_url=config.base_url,
            model_name=config.model_name,
            lora_rank=config.lora_rank,
            max_steps=config.sft_steps,
        )
        start_path = sl_loop.main(sft_config)

    service = connect(config.base_url)
    training_client = service.create_training_client_from_state(start_path)  # the weights, a fresh optimizer
    tokenizer = training_client.get_tokenizer()
    renderer = get_renderer(get_recommended_renderer_name(config.model_name, tokenizer), tokenizer)
    prompts = prompts_of(config.task)
    rng = random.Random(config.seed)
    sampling_params = SamplingParams(
        max_tokens=config.max_tokens, temperature=config.temperature, stop=renderer.get_stop_sequences()
    )

    with (log_dir / "metrics.jsonl").open("w") as metrics_file:
        progress = tqdm(
            range(config.max_steps), desc="rl_basic", disable=None
        )  # disable=None: a bar only on a terminal
        for step in progress:
            step_start = time.time()
            # A snapshot of the weights as they are now, so this step's samples are on-policy.
            sampling_client = training_client.save_weights_and_get_sampling_client()
            conversations_P = rng.sample(prompts, config.batch_size)
            prompts_P = [renderer.build_generation_prompt(conversation) for conversation in conversations_P]
            # Send every group before waiting for any: the server samples them in one batch.
            futures_P = []
            for prompt in prompts_P:
                seeded = sampling_params.model_copy(
                    update={"seed": rng.randrange(2**31)}
                )  # same config, same run
                futures_P.append(
                    sampling_client.sample(prompt, num_samples=config.group_size, sampling_params=seeded)
                )

            datums_D: list[Datum] = []
            rewards_P_G, correct_P_G, answer_tokens_P_G = [], [], []
            for conversation, prompt, future in zip(conversations_P, prompts_P, futures_P, strict=True):
                sequences_G = future.result().sequences
                replies_G = [
                    renderer.parse_response(sequence.tokens)[0]["content"] for sequence in sequences_G
                ]
                assessments_G = [gold_judge.assess(conversation, reply) for reply in replies_G]
                rewards_G = np.array([assessment.score for assessment in assessments_G])
                advantages_G = (
                    rewards_G - rewards_G.mean()
                )  # better or worse than the other answers to this question
                rewards_P_G.append(rewards_G)
                correct_P_G.append([assessment.content == "correct" for assessment in assessments_G])
                answer_tokens_P_G.append([len(sequence.tokens) for sequence in sequences_G])
                for sequence, advantage in zip(sequences_G, advantages_G, strict=True):
                    if advantage != 0.0:  # an answer as good as its group's mean teaches nothing
                        datums_D.append(make_datum(prompt, sequence, float(advantage)))

            metrics = {
                "env/all/reward/total": float(np.mean(rewards_P_G)),
                "env/all/correct": float(np.mean(correct_P_G)),
                "env/all/ac_tokens_per_turn": float(np.mean(answer_tokens_P_G)),
                "learning_rate": config.learning_rate,
            }
            if datums_D:  # empty when every group tied
                fwd_bwd_future = training_client.forward_backward(datums_D, "importance_sampling")
                optim_future = training_client.optim_step(AdamParams(learning_rate=config.learning_rate))
                output, optim_response = fwd_bwd_future.result(), optim_future.result()
                train_logprobs_D = [out["logprobs"].to_numpy() for out in output.loss_fn_outputs]
                metrics.update(sampler_trainer_metrics(datums_D, train_logprobs_D))
                metrics.update(
                    {f"optim/{key}": value for key, value in (optim_response.metrics or {}).items()}
                )
            metrics["time/total"] = time.time() - step_start
            metrics_file.write(json.dumps({"step": step, **metrics}) + "\n")
            metrics_file.flush()  # a killed run keeps every step it logged
            progress.set_postfix(reward=f"{metrics['env/all/reward/total']:.2f}")

    state_path = training_client.save_state("final").result().path
    sampler_path = training_client.save_weights_for_sampler("final").result().path
    # One line in the format of the shared loops' checkpoints.jsonl, so their tools find these weights.
    record = {
        "name": "final",
        "batch": config.max_steps,
        "final": True,
        "state_path": state_path,
        "sampler_path": sampler_path,
    }
    (log_dir / "checkpoints.jsonl").write_text(json.dumps(record) + "\n")
    plot_path = plot_metrics(
        log_dir,
        keys=[
            "env/all/reward/total",
            "env/all/correct",
            "optim/entropy",
            "optim/kl_sample_train_v1",
            "env/all/ac_tokens_per_turn",
        ],
    )
    service.close()

    print(f"final weights: {state_path}")
    print(f"for sampling:  {sampler_path}")
    print(f"curves:        {plot_path}")
    return state_path


if __name__ == "__main__":
    chz.nested_entrypoint(main)
