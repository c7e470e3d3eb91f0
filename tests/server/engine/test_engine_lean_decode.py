"""The lean Llama decode step (`server_stub/sampling/llama_decode.py`) against the Hugging Face module it
replaces: the same logits step by step, the same greedy tokens as `generate`, sampled logprobs equal to
a teacher-forced forward, LoRA adapters applied as peft applies them, and weights re-read once changed."""

from __future__ import annotations

import warnings

import pytest
import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from server_stub.models.builtin_tokenizer import builtin_tokenizer_json
from server_stub.models.lora_hub import LoraHub, LoraSpec
from server_stub.models.tiny_llama import TINY_LLAMA_EOS_ID, build_tiny_llama
from server_stub.models.token_bytes import TokenBytes
from server_stub.sampling import FP32_LOGPROB_ATOL, llama_decode
from server_stub.sampling import generate as generate_module
from server_stub.sampling.generate import generate
from server_stub.sampling.kv_cache import sampling_cache
from server_stub.sampling.requests import PreparedRequest
from server_stub.sampling.rng import row_key, uniform_block, uniforms

STEP_ATOL = 1e-5


def _gqa_llama() -> LlamaForCausalLM:
    """A small random Llama with grouped-query attention and a non-default rotary base."""
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        intermediate_size=160,
        rope_theta=1000.0,
        tie_word_embeddings=False,
        max_position_embeddings=256,
        eos_token_id=0,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return LlamaForCausalLM(config).eval()


def _with_lora(model: torch.nn.Module) -> LoraHub:
    """The model with an active LoRA adapter whose B is non-zero (so it changes the logits)."""
    hub = LoraHub(model, "test")
    hub.add("sample_r4_amu", LoraSpec(rank=4), seed=1, trainable=False)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        for name, param in hub.parameters_of("sample_r4_amu").items():
            if "lora_B" in name:
                param.normal_(std=0.05)
    hub.activate("sample_r4_amu")
    return hub


def _request(prompt: list[int], **overrides: object) -> PreparedRequest:
    settings: dict[str, object] = {
        "prompt": prompt,
        "num_samples": 1,
        "max_tokens": 12,
        "temperature": 0.0,
        "top_k": -1,
        "top_p": 1.0,
        "seed": 0,
        "stop_token_ids": (TINY_LLAMA_EOS_ID,),
        "stop_strings": (),
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
    }
    settings.update(overrides)
    return PreparedRequest(**settings)  # type: ignore[arg-type]


def _sample(module: torch.nn.Module, requests: list[PreparedRequest], vocab: int) -> list:
    with torch.inference_mode():
        return generate(module, requests, TokenBytes(builtin_tokenizer_json()), vocab, 0, 4096)


def _sample_through_hf(
    module: torch.nn.Module, requests: list[PreparedRequest], vocab: int, monkeypatch: pytest.MonkeyPatch
) -> list:
    with monkeypatch.context() as patch:
        patch.setattr(generate_module, "plan_for", lambda _: None)
        return _sample(module, requests, vocab)


@pytest.mark.parametrize("model_kind", ["tiny", "gqa", "tiny_lora", "gqa_lora_unfused"])
def test_each_decode_step_gives_the_hugging_face_logits(
    model_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_tiny_llama(torch.device("cpu"), torch.float32) if "tiny" in model_kind else _gqa_llama()
    if "lora" in model_kind:
        _with_lora(model)
    if "unfused" in model_kind:
        monkeypatch.setattr(llama_decode, "FUSE_MAX_BYTES", 0)
    plan = llama_decode.plan_for(model)
    assert plan is not None
    fused = all(len(layer.qkv.pieces) == 1 for layer in plan.layers)
    assert fused != ("unfused" in model_kind)
    # Two left-padded prompts fanned out to three rows, then four decode steps, through both paths.
    prompts = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    rows = torch.tensor([0, 1, 1])
    caches = [sampling_cache(model.config, 8) for _ in range(2)]
    with torch.inference_mode():
        for cache in caches:
            model(input_ids=prompts, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
            cache.reorder_cache(rows)
        rotary = plan.rotary_table(16)
        attention = torch.cat([mask[rows], torch.ones(3, 6, dtype=torch.int64)], dim=1)
        for step, token in enumerate((3, 4, 5, 6)):
            ids = torch.tensor([token, token + 1, token + 2])
            position = positions[rows, -1] + 1 + step
            filled = 5 + step + 1
            theirs = model(
                input_ids=ids.unsqueeze(-1),
                attention_mask=attention[:, :filled],
                position_ids=position.unsqueeze(-1),
                cache=caches[0],
                use_cache=True,
            ).logits[:, -1]
            padding = (attention[:, :filled] == 0)[:, None, None, :]
            ours = plan.step(ids, rotary[position], caches[1], padding)
            assert torch.allclose(ours, theirs, atol=STEP_ATOL), float((ours - theirs).abs().max())


def test_greedy_tokens_equal_generate_on_the_builtin_model() -> None:
    model = build_tiny_llama(torch.device("cpu"), torch.float32)
    tok = Tokenizer.from_str(builtin_tokenizer_json())
    prompts = [
        tok.encode(text).ids for text in ("User: What is 3 plus 4?\n\nAssistant:", "Hello there", "a b c")
    ]
    assert llama_decode.plan_for(model) is not None
    ours = _sample(model, [_request(p, max_tokens=24) for p in prompts], 512)
    for prompt, response in zip(prompts, ours, strict=True):
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            generated = model.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                do_sample=False,
                max_new_tokens=24,
                eos_token_id=TINY_LLAMA_EOS_ID,
                pad_token_id=TINY_LLAMA_EOS_ID,
            )
        assert response.sequences[0].tokens == generated[0, len(prompt) :].tolist()


@pytest.mark.parametrize("lora", [False, True])
def test_sampled_logprobs_equal_a_teacher_forced_forward(lora: bool) -> None:
    model = build_tiny_llama(torch.device("cpu"), torch.float32)
    if lora:
        _with_lora(model)
    prompts = [list(range(20, 31)), list(range(40, 45))]
    requests = [
        _request(prompts[0], num_samples=3, max_tokens=16, temperature=1.0, seed=5),
        _request(prompts[1], num_samples=2, max_tokens=9, temperature=0.7, top_k=30, seed=6),
    ]
    temperatures = [1.0, 0.7]
    responses = _sample(model, requests, 512)
    for prompt, temperature, response in zip(prompts, temperatures, responses, strict=True):
        for seq in response.sequences:
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([prompt + seq.tokens])).logits[0, len(prompt) - 1 : -1]
            expected = torch.log_softmax(logits / temperature, -1).gather(
                1, torch.tensor(seq.tokens)[:, None]
            )
            assert seq.logprobs == pytest.approx(expected.flatten().tolist(), abs=FP32_LOGPROB_ATOL)


@pytest.mark.parametrize("lora", [False, True])
def test_the_lean_path_and_the_hugging_face_path_sample_the_same_tokens(
    lora: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _gqa_llama()
    if lora:
        _with_lora(model)
    requests = [
        _request(list(range(10, 30)), num_samples=4, max_tokens=14, temperature=1.0, seed=11),
        _request(list(range(50, 56)), num_samples=9, max_tokens=3, temperature=1.0, seed=12),
        _request(list(range(60, 70)), max_tokens=14, temperature=0.0),
        _request(list(range(80, 88)), num_samples=2, max_tokens=10, temperature=0.8, top_p=0.9, seed=13),
    ]
    lean = _sample(model, requests, 300)
    hf = _sample_through_hf(model, requests, 300, monkeypatch)
    for ours, theirs in zip(lean, hf, strict=True):
        assert [s.tokens for s in ours.sequences] == [s.tokens for s in theirs.sequences]
        assert [s.stop_reason for s in ours.sequences] == [s.stop_reason for s in theirs.sequences]
        for a, b in zip(ours.sequences, theirs.sequences, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=FP32_LOGPROB_ATOL)


def test_a_plan_follows_weight_and_adapter_changes() -> None:
    model = build_tiny_llama(torch.device("cpu"), torch.float32)
    base_plan = llama_decode.plan_for(model)
    assert base_plan is not None and llama_decode.plan_for(model) is base_plan  # unchanged weights: reused
    hub = _with_lora(model)
    lora_plan = llama_decode.plan_for(model)
    assert lora_plan is not None and lora_plan is not base_plan
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.lora_B["sample_r4_amu"].weight.add_(0.1)
    changed = llama_decode.plan_for(model)
    assert changed is not None and changed is not lora_plan
    assert not torch.equal(changed.layers[0].qkv.pieces[0].weight, lora_plan.layers[0].qkv.pieces[0].weight)
    hub.activate(None)
    plain = llama_decode.plan_for(model)
    assert plain is not None
    assert torch.equal(plain.layers[0].qkv.pieces[0].weight, base_plan.layers[0].qkv.pieces[0].weight)


def test_models_the_lean_step_does_not_reproduce_keep_the_hugging_face_module() -> None:
    model = _gqa_llama()
    model.config.attention_bias = True
    assert llama_decode.plan_for(model) is None


def test_a_block_of_uniforms_equals_the_per_step_uniforms() -> None:
    keys = torch.tensor([row_key(seed, row) for seed in (0, 7, 1 << 40) for row in range(5)])
    block = uniform_block(keys, 30, 6)
    for i in range(6):
        assert torch.equal(block[:, i], uniforms(keys, 30 + i))


@pytest.mark.parametrize("small", [True, False])
def test_a_small_model_prefills_and_decodes_on_one_thread(
    small: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_tiny_llama(torch.device("cpu"), torch.float32)
    if not small:  # the same model counted as large: it keeps the caller's thread count throughout
        monkeypatch.setattr(llama_decode, "FUSE_MAX_BYTES", 0)
    seen: list[int] = []
    hook = model.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    steps = llama_decode.DecodePlan.step
    monkeypatch.setattr(
        llama_decode.DecodePlan,
        "step",
        lambda plan, *args: seen.append(torch.get_num_threads()) or steps(plan, *args),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _sample(model, [_request([5, 6, 7], max_tokens=4), _request([8, 9], max_tokens=4)], 512)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
        hook.remove()
    assert seen and after == 2  # the prefill (the module's forward) and the decode steps, then restored
    assert set(seen) == ({1} if small else {2})
