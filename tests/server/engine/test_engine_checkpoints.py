"""Checkpoints: formats others load, atomic writes, restart survival, exact resume, TTL, deletion."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from cookbook.client import types
from server_stub.engine import ConflictError, NotFoundError, SampleJob, UserError
from server_stub.storage import checkpoints as checkpoints_module
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, sample_request, sft_datum, weights_of

DATA = [sft_datum([5, 17, 99, 230, 41, 8, 77]), sft_datum([12, 400, 3, 3, 61])]
ADAM = types.AdamParams(learning_rate=3e-3, weight_decay=0.01, grad_clip_norm=1.0)


def _train(engine: TorchEngine, model_id: str, steps: int) -> None:
    for _ in range(steps):
        engine.forward_backward(model_id, fwd(DATA), backward=True)
        engine.optim_step(model_id, ADAM)


def _logprobs(engine: TorchEngine, model_id: str) -> list[float]:
    out = engine.forward_backward(model_id, fwd(DATA), backward=False)
    return [v for o in out.loss_fn_outputs for v in o["logprobs"].data]


@pytest.mark.parametrize("lora", [None, types.LoraConfig(rank=8, seed=1)])
def test_resume_after_restart_is_exact(tmp_path: Path, lora: types.LoraConfig | None) -> None:
    first = TorchEngine(tmp_path, device="cpu")
    first.create_model("run-a", TINY, lora, {"renderer_name": "role_colon", "n": 3})
    _train(first, "run-a", 3)
    path = first.save_state("run-a", "step3", overwrite=False, ttl_seconds=None).path
    assert path == "tinker://run-a/weights/step3"
    _train(first, "run-a", 1)  # the uninterrupted run's next step
    expected_weights, expected_lp = weights_of(first, "run-a"), _logprobs(first, "run-a")

    second = TorchEngine(tmp_path, device="cpu")  # a restarted server on the same storage
    info = second.weights_info(path)
    assert (info.base_model, info.is_lora, info.lora_rank) == (
        TINY,
        lora is not None,
        lora.rank if lora else None,
    )
    run = second.training_run("run-a")
    assert run.base_model == TINY and run.user_metadata == {"renderer_name": "role_colon", "n": "3"}
    assert run.last_checkpoint is not None and run.last_checkpoint.tinker_path == path
    assert [c.tinker_path for c in second.list_checkpoints("run-a").checkpoints] == [path]
    second.create_model("run-b", TINY, lora, None)
    second.load_state("run-b", path, optimizer=True)
    _train(second, "run-b", 1)
    resumed = weights_of(second, "run-b")
    assert all(torch.equal(expected_weights[n], resumed[n]) for n in expected_weights)
    assert _logprobs(second, "run-b") == expected_lp


def test_weights_only_load_resets_the_optimizer(engine: TorchEngine) -> None:
    engine.create_model("a", TINY, None, None)
    _train(engine, "a", 2)
    path = engine.save_state("a", "s", overwrite=False, ttl_seconds=None).path
    engine.create_model("b", TINY, None, None)
    engine.load_state("b", path, optimizer=False)
    assert _logprobs(engine, "b") == _logprobs(engine, "a")
    assert (
        engine._models["b"].optimizer.step_count == 0 and not engine._models["b"].optimizer.state["exp_avg"]
    )


def test_load_state_refuses_a_different_shape(engine: TorchEngine) -> None:
    engine.create_model("full", TINY, None, None)
    engine.create_model("r8", TINY, types.LoraConfig(rank=8), None)
    engine.create_model("r4", TINY, types.LoraConfig(rank=4), None)
    full_path = engine.save_state("full", "s", overwrite=False, ttl_seconds=None).path
    r8_path = engine.save_state("r8", "s", overwrite=False, ttl_seconds=None).path
    before = _logprobs(engine, "r4")
    with pytest.raises(
        UserError, match="holds LoRA rank 8 on attn\\+mlp\\+unembed, this model is LoRA rank 4"
    ):
        engine.load_state("r4", r8_path, optimizer=True)
    with pytest.raises(UserError, match="holds full weights, this model is LoRA rank 4"):
        engine.load_state("r4", full_path, optimizer=False)
    sampler_path = engine.save_sampler_weights("r8", "smp", None).path
    assert sampler_path == "tinker://r8/sampler_weights/smp"
    with pytest.raises(UserError, match="no optimizer state"):
        engine.load_state("r8", sampler_path, optimizer=True)
    with pytest.raises(NotFoundError):
        engine.load_state("r4", "tinker://r8/weights/missing", optimizer=False)
    assert _logprobs(engine, "r4") == before  # failed loads changed nothing


def test_peft_adapter_export_loads_in_peft(engine: TorchEngine, tmp_path: Path) -> None:
    from peft import PeftModel

    engine.create_model("lora", TINY, types.LoraConfig(rank=8, seed=2), None)
    _train(engine, "lora", 3)
    path = engine.save_sampler_weights("lora", "export", None).path
    assert path is not None
    _, directory = engine.checkpoints.get(path)
    assert {"adapter_model.safetensors", "adapter_config.json", "checkpoint.json"} <= {
        p.name for p in directory.iterdir()
    }
    peft_model = PeftModel.from_pretrained(engine.registry.fresh_model(TINY), str(directory))
    tokens = [5, 17, 99, 230, 41, 8, 77]
    with torch.no_grad():
        logits = peft_model(input_ids=torch.tensor([tokens[:-1]])).logits[0]
    expected = torch.log_softmax(logits, -1)[torch.arange(6), torch.tensor(tokens[1:])]
    assert _logprobs(engine, "lora")[:6] == pytest.approx(expected.tolist(), abs=1e-5)


def test_full_weight_export_is_a_hugging_face_model_dir(engine: TorchEngine) -> None:
    from transformers import AutoModelForCausalLM

    engine.create_model("full", TINY, None, None)
    _train(engine, "full", 2)
    path = engine.save_sampler_weights("full", "hf", None).path
    assert path is not None
    _, directory = engine.checkpoints.get(path)
    model = AutoModelForCausalLM.from_pretrained(str(directory))
    trained = weights_of(engine, "full")
    assert torch.equal(model.model.embed_tokens.weight, trained["model.embed_tokens.weight"])
    assert (directory / "tokenizer.json").is_file()


def test_sampler_checkpoint_serves_after_restart(tmp_path: Path) -> None:
    first = TorchEngine(tmp_path, device="cpu")
    first.create_model("run", TINY, types.LoraConfig(rank=4), None)
    _train(first, "run", 2)
    ephemeral = first.save_sampler_weights("run", None, None).sampling_session_id
    path = first.save_sampler_weights("run", "final", None).path
    request = sample_request([5, 6, 7, 8], num_samples=2, max_tokens=6, temperature=1.0, seed=3)
    (expected,) = first.sample([SampleJob(ephemeral, request)])

    second = TorchEngine(tmp_path, device="cpu")
    sampler = second.create_sampler(None, path)
    assert sampler.model_path == path and sampler.base_model == TINY
    assert second.get_sampler(sampler.sampler_id) == sampler
    (got,) = second.sample([SampleJob(sampler.sampler_id, request)])
    assert got == expected
    with pytest.raises(UserError, match="not 'other'"):
        second.create_sampler("other", path)


def test_overwrite_and_conflict(engine: TorchEngine) -> None:
    engine.create_model("m", TINY, None, None)
    engine.save_state("m", "ck", overwrite=False, ttl_seconds=None)
    with pytest.raises(ConflictError, match="already exists"):
        engine.save_state("m", "ck", overwrite=False, ttl_seconds=None)
    _train(engine, "m", 1)
    path = engine.save_state("m", "ck", overwrite=True, ttl_seconds=None).path
    engine.create_model("n", TINY, None, None)
    engine.load_state("n", path, optimizer=True)
    assert _logprobs(engine, "n") == _logprobs(engine, "m")
    with pytest.raises(ConflictError):
        engine.save_sampler_weights("m", "same", None)
        engine.save_sampler_weights("m", "same", None)


def test_failed_save_keeps_the_existing_checkpoint(
    engine: TorchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import server_stub.torch_engine as engine_module

    engine.create_model("m", TINY, None, None)
    path = engine.save_state("m", "ck", overwrite=False, ttl_seconds=None).path
    saved = _logprobs(engine, "m")
    _train(engine, "m", 1)

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(engine_module, "write_optimizer", broken)
    with pytest.raises(OSError, match="disk full"):
        engine.save_state("m", "ck", overwrite=True, ttl_seconds=None)
    monkeypatch.undo()
    run_dir = engine.layout.run_dir("m") / "weights"
    assert [p.name for p in run_dir.iterdir()] == ["ck"]  # no temp dir left behind
    engine.create_model("n", TINY, None, None)
    engine.load_state("n", path, optimizer=True)
    assert _logprobs(engine, "n") == saved


def test_ttl_and_delete(engine: TorchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.create_model("m", TINY, None, None)
    short = engine.save_state("m", "short", overwrite=False, ttl_seconds=60).path
    keep = engine.save_state("m", "keep", overwrite=False, ttl_seconds=None).path
    listed = engine.list_checkpoints("m").checkpoints
    assert {c.tinker_path for c in listed} == {short, keep}
    assert next(c for c in listed if c.tinker_path == short).expires_at is not None
    later = time.time() + 120
    monkeypatch.setattr(checkpoints_module.time, "time", lambda: later)
    assert [c.tinker_path for c in engine.list_checkpoints("m").checkpoints] == [keep]
    with pytest.raises(NotFoundError, match="expired"):
        engine.weights_info(short)
    engine.save_state("m", "short", overwrite=False, ttl_seconds=None)  # an expired name can be reused
    engine.delete_checkpoint("m", "weights/keep")
    with pytest.raises(NotFoundError):
        engine.weights_info(keep)
    with pytest.raises(NotFoundError):
        engine.delete_checkpoint("m", "weights/keep")
    with pytest.raises(UserError):
        engine.save_state("m", "x", overwrite=False, ttl_seconds=0)


def test_unknown_runs(engine: TorchEngine) -> None:
    with pytest.raises(NotFoundError):
        engine.training_run("nobody")
    with pytest.raises(NotFoundError):
        engine.list_checkpoints("nobody")
    engine.create_model("m", TINY, None, None)
    engine.unload_model("m")
    assert engine.training_run("m").training_run_id == "m"  # the run outlives the loaded model
    with pytest.raises(NotFoundError):
        engine.get_info("m")
    with pytest.raises(ConflictError):
        engine.create_model("m", TINY, None, None)
