"""The tiny model, the registry and local Hugging Face directories as extra base models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server_stub.engine import NotFoundError
from server_stub.models.builtin_tokenizer import builtin_tokenizer_json
from server_stub.models.tiny_llama import build_tiny_llama
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, sft_datum


def test_tiny_llama_is_identical_every_build_and_shaped_as_specified() -> None:
    a = build_tiny_llama(torch.device("cpu"), torch.float32)
    b = build_tiny_llama(torch.device("cpu"), torch.float32)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name
    cfg = a.config
    assert (
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.intermediate_size,
        cfg.max_position_embeddings,
    ) == (512, 128, 2, 4, 4, 512, 512)
    assert a.lm_head.weight is a.model.embed_tokens.weight
    assert a.dtype == torch.float32
    assert 500_000 < sum(p.numel() for p in a.parameters()) < 700_000


def test_global_rng_does_not_change_the_weights() -> None:
    torch.manual_seed(999)
    a = build_tiny_llama(torch.device("cpu"), torch.float32)
    torch.manual_seed(1)
    b = build_tiny_llama(torch.device("cpu"), torch.float32)
    assert torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)


def test_metadata(engine: TorchEngine) -> None:
    assert [(m.model_name, m.max_context_length) for m in engine.supported_models()] == [(TINY, 512)]
    limits = engine.model_limits(TINY)
    assert (limits.vocab_size, limits.max_context_length) == (512, 512)
    tokenizer = engine.tokenizer(TINY)
    assert tokenizer.tokenizer_json == builtin_tokenizer_json()
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>" and tokenizer.bos_token is None
    with pytest.raises(NotFoundError, match="unknown base model 'nope'"):
        engine.model_limits("nope")
    with pytest.raises(NotFoundError):
        engine.create_model("m1", "nope", None, None)


def test_device_and_dtype_resolution(tmp_path: Path) -> None:
    engine = TorchEngine(tmp_path, device="auto", dtype="auto")
    assert engine.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert engine.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    with pytest.raises(ValueError, match="unknown dtype"):
        TorchEngine(tmp_path, device="cpu", dtype="float7")


def test_local_hf_directory_as_extra_model(tmp_path: Path, encode) -> None:
    """A saved HF model directory serves limits, tokenizer, training and the same numbers as the source."""
    source = build_tiny_llama(torch.device("cpu"), torch.float32)
    model_dir = tmp_path / "hf-model"
    source.save_pretrained(model_dir)
    (model_dir / "tokenizer.json").write_text(builtin_tokenizer_json())
    (model_dir / "tokenizer_config.json").write_text(
        '{"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}'
    )
    engine = TorchEngine(tmp_path / "storage", device="cpu", extra_models={"my-model": str(model_dir)})
    assert {m.model_name for m in engine.supported_models()} == {TINY, "my-model"}
    assert engine.model_limits("my-model").max_context_length == 512
    assert engine.tokenizer("my-model").eos_token == "<|endoftext|>"
    tokens = encode("User: hello there\n\nAssistant: hi")
    results = []
    for model_id, base in (("a", TINY), ("b", "my-model")):
        engine.create_model(model_id, base, None, None)
        results.append(engine.forward_backward(model_id, fwd([sft_datum(tokens)]), backward=False))
    assert results[0].loss_fn_outputs[0]["logprobs"].data == pytest.approx(
        results[1].loss_fn_outputs[0]["logprobs"].data, abs=1e-5
    )
    assert engine.registry.get("my-model").eos_ids == (0,)


def test_bad_extra_model_directory_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no config\.json"):
        TorchEngine(tmp_path / "s", device="cpu", extra_models={"x": str(tmp_path / "missing")})
