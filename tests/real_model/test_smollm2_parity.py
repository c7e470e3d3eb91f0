"""The server on a real model (SmolLM2-135M-Instruct from its GGUF, fp32) against transformers and peft
in this process: prompt logprobs, greedy generation, and one LoRA training step."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from cookbook.client import types
from cookbook.client.http import HttpServiceClient
from cookbook.renderers.chat_template import render_chat_template
from cookbook.renderers.types import Message
from cookbook.tokenizer_utils import Tokenizer

from .conftest import SERVED_NAME

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LOGPROB_TOLERANCE = 1e-4
# Each question with a word its greedy answer must contain.
QUESTIONS = (
    ("What is the capital of France?", "Paris"),
    ("What color is the sky on a clear day?", "blue"),
    ("How many days are in a week?", "7"),
)
LORA_RANK, LORA_SEED, LORA_ALPHA = 8, 1234, 32
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
# Tinker's default step: Adam's first step moves every parameter by about the learning rate, whatever
# its gradient's size, so float noise in a near-zero gradient shows in proportion to it.
ADAM = types.AdamParams(learning_rate=1e-4)


def _chat_tokens(tokenizer: Tokenizer, messages: list[Message], add_generation_prompt: bool) -> list[int]:
    return tokenizer.encode(
        render_chat_template(tokenizer, messages, add_generation_prompt=add_generation_prompt)
    )


def _reference_logprobs(model: torch.nn.Module, tokens: list[int]) -> np.ndarray:
    """log p(token t | tokens before t) for t >= 1, from a plain transformers forward."""
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0, :-1].float()
    picked = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(tokens[1:])[:, None])[:, 0]
    return picked.numpy()


def _datum(tokens: list[int], weights: list[float]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_numpy(np.array(tokens[1:], dtype=np.int64)),
            "weights": types.TensorData.from_numpy(np.array(weights[1:], dtype=np.float32)),
        },
    )


def test_prompt_logprobs_equal_transformers(
    smollm2_service: HttpServiceClient, smollm2_tokenizer: Tokenizer, reference_model: PreTrainedModel
) -> None:
    tokens = _chat_tokens(
        smollm2_tokenizer,
        [Message(role="user", content=QUESTIONS[0][0]), Message(role="assistant", content="Paris.")],
        add_generation_prompt=False,
    )
    expected = _reference_logprobs(reference_model, tokens)
    sampler = smollm2_service.create_sampling_client(base_model=SERVED_NAME)
    prompt_logprobs = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    assert prompt_logprobs[0] is None
    sampled_diff = float(np.abs(np.array(prompt_logprobs[1:], dtype=np.float64) - expected).max())
    trainer = smollm2_service.create_lora_training_client(SERVED_NAME, rank=LORA_RANK)
    out = trainer.forward([_datum(tokens, [1.0] * len(tokens))], "cross_entropy").result()
    forward_diff = float(np.abs(out.loss_fn_outputs[0]["logprobs"].to_numpy() - expected).max())
    print(f"max abs logprob diff: compute_logprobs {sampled_diff:.2e}, forward {forward_diff:.2e}")
    assert sampled_diff <= LOGPROB_TOLERANCE
    assert forward_diff <= LOGPROB_TOLERANCE


def test_greedy_sampling_equals_generate_and_answers_sensibly(
    smollm2_service: HttpServiceClient, smollm2_tokenizer: Tokenizer, reference_model: PreTrainedModel
) -> None:
    eos = smollm2_tokenizer.eos_token_id
    assert eos is not None
    sampler = smollm2_service.create_sampling_client(base_model=SERVED_NAME)
    params = types.SamplingParams(max_tokens=40, temperature=0.0, stop=[eos])
    prompts = [
        _chat_tokens(smollm2_tokenizer, [Message(role="user", content=q)], add_generation_prompt=True)
        for q, _ in QUESTIONS
    ]
    futures = [
        sampler.sample(types.ModelInput.from_ints(p), num_samples=1, sampling_params=params) for p in prompts
    ]
    for (question, word), prompt, future in zip(QUESTIONS, prompts, futures, strict=True):
        ours = future.result().sequences[0].tokens
        with torch.no_grad():
            generated = reference_model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                do_sample=False,
                max_new_tokens=40,
                eos_token_id=eos,
                pad_token_id=eos,
            )
        theirs = generated[0, len(prompt) :].tolist()
        answer = smollm2_tokenizer.decode(ours, skip_special_tokens=True)
        print(f"{question!r} -> {answer!r}")
        assert ours == theirs, question
        assert word.lower() in answer.lower(), answer


def test_a_lora_step_equals_peft(
    smollm2_service: HttpServiceClient, smollm2_tokenizer: Tokenizer, reference_model: PreTrainedModel
) -> None:
    from peft import LoraConfig, get_peft_model

    examples = [
        [Message(role="user", content=q), Message(role="assistant", content=f"The answer is {w}.")]
        for q, w in QUESTIONS
    ]
    tokens = [_chat_tokens(smollm2_tokenizer, m, add_generation_prompt=False) for m in examples]
    # Train on the answers only: the tokens after the last assistant header.
    prompt_lengths = [
        len(_chat_tokens(smollm2_tokenizer, m[:1], add_generation_prompt=True)) for m in examples
    ]
    weights = [[0.0] * n + [1.0] * (len(t) - n) for t, n in zip(tokens, prompt_lengths, strict=True)]
    batch = [_datum(t, w) for t, w in zip(tokens, weights, strict=True)]

    trainer = smollm2_service.create_lora_training_client(SERVED_NAME, rank=LORA_RANK, seed=LORA_SEED)
    server_loss = trainer.forward_backward(batch, "cross_entropy").result().metrics["loss:sum"]
    trainer.optim_step(ADAM).result()
    after = trainer.forward(batch, "cross_entropy").result()
    server_after = [o["logprobs"].to_numpy() for o in after.loss_fn_outputs]

    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(LORA_SEED)
        peft_model = get_peft_model(copy.deepcopy(reference_model), config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable,
        lr=ADAM.learning_rate,
        betas=(ADAM.beta1, ADAM.beta2),
        eps=ADAM.eps,
        weight_decay=ADAM.weight_decay,
    )
    peft_loss = torch.zeros(())
    for t, w in zip(tokens, weights, strict=True):
        logits = peft_model(torch.tensor([t])).logits[0, :-1]
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(1, torch.tensor(t[1:])[:, None])[:, 0]
        peft_loss = peft_loss - (logprobs * torch.tensor(w[1:])).sum()
    peft_loss.backward()
    optimizer.step()
    peft_model.eval()
    loss_diff = abs(server_loss - peft_loss.item())
    after_diff = max(
        float(np.abs(ours - _reference_logprobs(peft_model, t)).max())
        for ours, t in zip(server_after, tokens, strict=True)
    )
    print(
        f"LoRA step: loss {server_loss:.6f} vs peft {peft_loss.item():.6f} (diff {loss_diff:.2e}); "
        f"max abs logprob diff after the step {after_diff:.2e}"
    )
    assert after_diff <= LOGPROB_TOLERANCE
    assert server_loss == pytest.approx(peft_loss.item(), rel=1e-5)
