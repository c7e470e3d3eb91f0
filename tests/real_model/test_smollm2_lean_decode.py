"""The sampler's lean decode step on SmolLM2-135M (grouped-query attention, unfused weights, LoRA as a
low-rank term) against the Hugging Face module in this process: the same tokens, and sampled logprobs
equal to a teacher-forced forward."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import pytest
import torch

from server_stub.models.builtin_tokenizer import builtin_tokenizer_json
from server_stub.models.lora_hub import LoraHub, LoraSpec
from server_stub.models.token_bytes import TokenBytes
from server_stub.sampling import FP32_LOGPROB_ATOL, llama_decode
from server_stub.sampling import generate as generate_module
from server_stub.sampling.generate import generate
from server_stub.sampling.requests import PreparedRequest

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SLOT = "sample_r8_amu"


def _request(prompt: list[int], eos: int, **overrides: object) -> PreparedRequest:
    settings: dict[str, object] = {
        "prompt": prompt,
        "num_samples": 1,
        "max_tokens": 10,
        "temperature": 1.0,
        "top_k": -1,
        "top_p": 1.0,
        "seed": 0,
        "stop_token_ids": (eos,),
        "stop_strings": (),
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
    }
    settings.update(overrides)
    return PreparedRequest(**settings)  # type: ignore[arg-type]


def _sample(model: torch.nn.Module, requests: list[PreparedRequest]) -> list:
    # No request has stop strings, so the byte table (which needs the model's own tokenizer) is never read.
    token_bytes = TokenBytes(builtin_tokenizer_json())
    with torch.inference_mode():
        return generate(model, requests, token_bytes, model.config.vocab_size, 0, 4096)


@pytest.fixture(scope="module", params=[False, True], ids=["base", "lora"])
def model(request: pytest.FixtureRequest, reference_model: PreTrainedModel) -> torch.nn.Module:
    copied = copy.deepcopy(reference_model)
    if request.param:
        hub = LoraHub(copied, "smollm2")
        hub.add(SLOT, LoraSpec(rank=8), seed=1, trainable=False)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(2)
            for name, param in hub.parameters_of(SLOT).items():
                if "lora_B" in name:
                    param.normal_(std=0.01)
        hub.activate(SLOT)
    return copied


def test_smollm2_lean_decode_matches_the_module_and_a_teacher_forced_forward(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = llama_decode.plan_for(model)
    assert plan is not None and len(plan.layers[0].qkv.pieces) == 3  # a large model keeps its own weights
    eos = int(model.config.eos_token_id)
    prompts = [list(range(1000, 1012)), list(range(2000, 2005))]
    requests = [
        _request(prompts[0], eos, num_samples=2, seed=3),
        _request(prompts[1], eos, temperature=0.0),
    ]
    lean = _sample(model, requests)
    with monkeypatch.context() as patch:
        patch.setattr(generate_module, "plan_for", lambda _: None)
        through_module = _sample(model, requests)
    for ours, theirs in zip(lean, through_module, strict=True):
        assert [s.tokens for s in ours.sequences] == [s.tokens for s in theirs.sequences]
    for prompt, response in zip(prompts, lean, strict=True):
        for seq in response.sequences:
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([prompt + seq.tokens])).logits[0, len(prompt) - 1 : -1]
            expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(seq.tokens)[:, None])
            assert seq.logprobs == pytest.approx(expected.flatten().tolist(), abs=FP32_LOGPROB_ATOL)
