"""Sampling: determinism, seeds, stops, lengths, logprobs consistent with training, snapshots."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from cookbook.client import types
from server_stub.engine import NotFoundError, SampleJob, UserError
from server_stub.sampling import FP32_LOGPROB_ATOL
from server_stub.torch_engine import TorchEngine

from .engine_helpers import TINY, fwd, sample_request, sft_datum

QUESTION = "User: What is 3 plus 4?\n\nAssistant:"
ANSWER = " 3 plus 4 is 7.\n\nUser:"
BYE = "Say bye"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TorchEngine, str, Tokenizer]:
    """A full-weight model taught two completions (one ending in a stop string, one in EOS), and its sampler."""
    from server_stub.models.builtin_tokenizer import builtin_tokenizer

    tok = builtin_tokenizer()
    engine = TorchEngine(Path(tmp_path_factory.mktemp("sampling")), device="cpu")
    engine.create_model("m", TINY, None, None)
    data = [sft_datum(tok.encode(QUESTION + ANSWER).ids), sft_datum([*tok.encode(BYE + " bye bye").ids, 0])]
    for _ in range(40):
        engine.forward_backward("m", fwd(data), backward=True)
        engine.optim_step("m", types.AdamParams(learning_rate=5e-3, eps=1e-8))
    sampler = engine.save_sampler_weights("m", None, None).sampling_session_id
    assert sampler is not None
    return engine, sampler, tok


def _sample(engine: TorchEngine, sampler: str, *requests: types.SampleRequest) -> list[types.SampleResponse]:
    results = engine.sample([SampleJob(sampler, r) for r in requests])
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results  # type: ignore[return-value]


def test_greedy_is_deterministic_and_stops_on_the_stop_string(trained) -> None:
    engine, sampler, tok = trained
    prompt = tok.encode(QUESTION).ids
    request = sample_request(prompt, num_samples=3, max_tokens=30, temperature=0.0, stop=["\n\nUser:"])
    first, second = _sample(engine, sampler, request, request)
    (alone,) = _sample(engine, sampler, request)
    others = [
        sample_request(tok.encode(BYE).ids, num_samples=2, max_tokens=4, temperature=1.0, seed=3),
        sample_request(list(range(40, 95)), max_tokens=12, temperature=0.0),
    ]
    mixed = _sample(engine, sampler, others[0], request, others[1])[1]
    seqs = first.sequences
    assert len(seqs) == 3 and seqs[0].tokens == seqs[1].tokens == seqs[2].tokens
    for response in (second, alone, mixed):  # the same tokens whatever else is in the batch
        assert [s.tokens for s in response.sequences] == [s.tokens for s in seqs]
        assert [s.stop_reason for s in response.sequences] == [s.stop_reason for s in seqs]
        for a, b in zip(seqs, response.sequences, strict=True):
            assert b.logprobs == pytest.approx(a.logprobs, abs=FP32_LOGPROB_ATOL)
    assert tok.decode(seqs[0].tokens) == ANSWER  # the stop string is kept, nothing after it
    assert seqs[0].stop_reason == "stop"
    assert len(seqs[0].logprobs) == len(seqs[0].tokens)


def test_the_sampler_uses_no_deprecated_transformers_api(trained) -> None:
    engine, sampler, tok = trained
    request = sample_request(tok.encode(QUESTION).ids, num_samples=2, max_tokens=5, temperature=1.0, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers announces a removal this way
        warnings.simplefilter("error", DeprecationWarning)
        _sample(engine, sampler, request.model_copy(update={"prompt_logprobs": True}), request)


def test_stop_string_completed_inside_a_token(trained) -> None:
    engine, sampler, tok = trained
    prompt = tok.encode(QUESTION).ids
    (result,) = _sample(engine, sampler, sample_request(prompt, max_tokens=30, temperature=0.0, stop="4 i"))
    text = tok.decode(result.sequences[0].tokens)
    assert text == " 3 plus 4 is"  # the whole token that completed "4 i" is kept
    assert "4 i" not in tok.decode(result.sequences[0].tokens[:-1])
    assert result.sequences[0].stop_reason == "stop"


def test_stop_token_ids_and_eos(trained) -> None:
    engine, sampler, tok = trained
    plus = tok.encode(" plus").ids[0]
    stop_tok, eos = _sample(
        engine,
        sampler,
        sample_request(tok.encode(QUESTION).ids, max_tokens=30, temperature=0.0, stop=[plus]),
        sample_request(tok.encode(BYE).ids, max_tokens=30, temperature=0.0),
    )
    assert stop_tok.sequences[0].tokens[-1] == plus and stop_tok.sequences[0].stop_reason == "stop"
    assert plus not in stop_tok.sequences[0].tokens[:-1]
    assert eos.sequences[0].tokens[-1] == 0 and eos.sequences[0].stop_reason == "stop"  # EOS kept
    assert tok.decode(eos.sequences[0].tokens[:-1]) == " bye bye"


def test_max_tokens_and_length_stop(trained) -> None:
    engine, sampler, tok = trained
    (result,) = _sample(
        engine,
        sampler,
        sample_request(tok.encode(QUESTION).ids, num_samples=2, max_tokens=3, temperature=1.0, seed=1),
    )
    assert [len(s.tokens) for s in result.sequences] == [3, 3]
    assert all(s.stop_reason == "length" for s in result.sequences)


def test_max_tokens_none_runs_to_the_context_limit(trained) -> None:
    engine, sampler, _ = trained
    prompt = [7] * 505
    (result,) = _sample(
        engine, sampler, sample_request(prompt, max_tokens=None, temperature=1.0, seed=3, stop=None)
    )
    seq = result.sequences[0]
    assert len(seq.tokens) <= 7 and (seq.stop_reason == "stop" or len(seq.tokens) == 7)


def test_seed_reproduces_alone_or_batched_with_others(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    from server_stub.sampling.token_choice import RowSettings

    engine, sampler, tok = trained
    select = RowSettings.select
    compactions = []
    monkeypatch.setattr(
        RowSettings, "select", lambda self, rows: compactions.append(len(rows)) or select(self, rows)
    )
    prompt = tok.encode("User: Name three colors.\n\nAssistant:").ids
    request = sample_request(prompt, num_samples=4, max_tokens=12, temperature=1.0, seed=1234)
    (alone,) = _sample(engine, sampler, request)
    others = [
        sample_request(tok.encode(BYE).ids, num_samples=3, max_tokens=5, temperature=0.7, seed=9),
        sample_request(list(range(40, 90)), num_samples=2, max_tokens=20, temperature=1.3, top_k=20, seed=2),
        sample_request(tok.encode(QUESTION).ids, max_tokens=8, temperature=0.0),
        sample_request(list(range(10, 17)), num_samples=12, max_tokens=2, temperature=1.0, seed=5),
    ]
    batched = _sample(engine, sampler, others[0], request, *others[1:])[1]
    assert compactions  # the short rows were dropped from the batch mid-way
    assert [s.tokens for s in batched.sequences] == [s.tokens for s in alone.sequences]
    for a, b in zip(alone.sequences, batched.sequences, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=FP32_LOGPROB_ATOL)
    assert len({tuple(s.tokens) for s in alone.sequences}) > 1  # rows of one request draw differently
    (other_seed,) = _sample(
        engine,
        sampler,
        request.model_copy(
            update={"sampling_params": request.sampling_params.model_copy(update={"seed": 4321})}
        ),
    )
    assert [s.tokens for s in other_seed.sequences] != [s.tokens for s in alone.sequences]


def test_top_k_one_and_tiny_top_p_are_greedy(trained) -> None:
    engine, sampler, _ = trained
    prompt = list(range(100, 130))
    greedy, top_k, top_p = _sample(
        engine,
        sampler,
        sample_request(prompt, max_tokens=10, temperature=0.0),
        sample_request(prompt, max_tokens=10, temperature=1.0, top_k=1, seed=5),
        sample_request(prompt, max_tokens=10, temperature=1.0, top_p=1e-6, seed=6),
    )
    assert greedy.sequences[0].tokens == top_k.sequences[0].tokens == top_p.sequences[0].tokens


def test_top_k_restricts_choices(trained) -> None:
    """With top_k=2 every sampled token is one of the two most likely at its position."""
    engine, sampler, _ = trained
    prompt = list(range(200, 220))
    (result,) = _sample(
        engine,
        sampler,
        sample_request(prompt, num_samples=8, max_tokens=6, temperature=2.0, top_k=2, seed=11),
    )
    module = engine.sampling_modules.module_for(
        engine.registry.get(TINY), engine._samplers[sampler].snapshot_id
    )
    for seq in result.sequences:
        with torch.no_grad():
            logits = module(input_ids=torch.tensor([prompt + seq.tokens])).logits[0]
        for i, token in enumerate(seq.tokens):
            assert token in logits[len(prompt) - 1 + i].topk(2).indices.tolist()


def test_sampled_logprobs_equal_training_logprobs_at_temperature_one(trained) -> None:
    engine, sampler, tok = trained
    prompt = tok.encode("User: What is the capital of France?\n\nAssistant:").ids
    (result,) = _sample(
        engine, sampler, sample_request(prompt, num_samples=3, max_tokens=15, temperature=1.0, seed=7)
    )
    for seq in result.sequences:
        full = prompt + seq.tokens
        out = engine.forward_backward("m", fwd([sft_datum(full)]), backward=False)
        train_lp = out.loss_fn_outputs[0]["logprobs"].data[len(prompt) - 1 :]
        assert seq.logprobs == pytest.approx(train_lp, abs=FP32_LOGPROB_ATOL)


def test_logprobs_are_of_the_tempered_distribution(trained) -> None:
    engine, sampler, tok = trained
    prompt = tok.encode(QUESTION).ids
    (result,) = _sample(engine, sampler, sample_request(prompt, max_tokens=6, temperature=0.5, seed=8))
    seq = result.sequences[0]
    module = engine.sampling_modules.module_for(
        engine.registry.get(TINY), engine._samplers[sampler].snapshot_id
    )
    with torch.no_grad():
        logits = module(input_ids=torch.tensor([prompt + seq.tokens])).logits[0, len(prompt) - 1 : -1]
    expected = (
        torch.log_softmax(logits / 0.5, dim=-1).gather(-1, torch.tensor(seq.tokens)[:, None]).squeeze(-1)
    )
    assert seq.logprobs == pytest.approx(expected.tolist(), abs=FP32_LOGPROB_ATOL)


def test_prompt_logprobs_and_topk(trained) -> None:
    engine, sampler, tok = trained
    prompt = tok.encode(QUESTION + ANSWER).ids
    request = sample_request(prompt, max_tokens=1, temperature=1.0, seed=0).model_copy(
        update={"prompt_logprobs": True, "topk_prompt_logprobs": 3}
    )
    result, _ = _sample(
        engine, sampler, request, sample_request(list(range(300, 340)), max_tokens=2, temperature=0)
    )
    assert result.prompt_logprobs is not None and result.topk_prompt_logprobs is not None
    assert result.prompt_logprobs[0] is None and result.topk_prompt_logprobs[0] is None
    assert len(result.prompt_logprobs) == len(result.topk_prompt_logprobs) == len(prompt)
    train = (
        engine.forward_backward("m", fwd([sft_datum(prompt)]), backward=False)
        .loss_fn_outputs[0]["logprobs"]
        .data
    )
    assert result.prompt_logprobs[1:] == pytest.approx(train, abs=FP32_LOGPROB_ATOL)
    for position, top in enumerate(result.topk_prompt_logprobs[1:], start=1):
        assert len(top) == 3
        values = [lp for _, lp in top]
        assert values == sorted(values, reverse=True)
        assert values[0] >= result.prompt_logprobs[position] - 1e-5
        if prompt[position] in [t for t, _ in top]:
            assert dict(top)[prompt[position]] == pytest.approx(
                result.prompt_logprobs[position], abs=FP32_LOGPROB_ATOL
            )


def test_bad_jobs_fail_alone(trained) -> None:
    engine, sampler, tok = trained
    good = sample_request(tok.encode(QUESTION).ids, max_tokens=5, temperature=0.0)
    too_long = sample_request([5] * 500, max_tokens=20, temperature=0.0)
    bad_token = sample_request([5, 9999], max_tokens=2)
    bad_top_p = sample_request([5, 6], max_tokens=2, top_p=0.0)
    results = engine.sample(
        [
            SampleJob(sampler, too_long),
            SampleJob(sampler, good),
            SampleJob("no-such", good),
            SampleJob(sampler, bad_token),
            SampleJob(sampler, bad_top_p),
        ]
    )
    assert (
        isinstance(results[0], UserError) and "exceeds the model's context length 512" in results[0].message
    )
    assert results[0].field == "sampling_params.max_tokens"
    assert isinstance(results[1], types.SampleResponse) and len(results[1].sequences[0].tokens) == 5
    assert isinstance(results[2], NotFoundError)
    assert isinstance(results[3], UserError) and "9999" in results[3].message
    assert isinstance(results[4], UserError) and results[4].field == "sampling_params.top_p"


def test_snapshots_are_immutable_and_survive_spilling(tmp_path: Path, encode) -> None:
    engine = TorchEngine(tmp_path, device="cpu")
    engine.create_model("m", TINY, None, None)
    prompt = encode(QUESTION)
    request = sample_request(prompt, num_samples=2, max_tokens=8, temperature=1.0, seed=42)
    first = engine.save_sampler_weights("m", None, None).sampling_session_id
    (before,) = _sample(engine, first, request)
    later = []
    for _ in range(4):  # more full-weight snapshots than stay resident: the first one is spilled
        engine.forward_backward("m", fwd([sft_datum([*prompt, 9, 9, 9])]), backward=True)
        engine.optim_step("m", types.AdamParams(learning_rate=1e-2))
        later.append(engine.save_sampler_weights("m", None, None).sampling_session_id)
    assert not engine.snapshots.is_resident(engine._samplers[first].snapshot_id)
    (after,) = _sample(engine, first, request)
    assert after == before
    (newest,) = _sample(engine, later[-1], request)
    assert newest != before


def test_base_model_sampler(engine: TorchEngine, encode) -> None:
    sampler = engine.create_sampler(TINY, None)
    assert sampler.base_model == TINY and engine.sampler_base_model(sampler.sampler_id) == TINY
    engine.create_model("lora", TINY, types.LoraConfig(rank=4), None)
    engine.forward_backward("lora", fwd([sft_datum([1, 2, 3, 4])]), backward=True)
    engine.optim_step("lora", types.AdamParams(learning_rate=0.1))
    engine.create_model("full", TINY, None, None)
    prompt = encode(QUESTION)
    (result,) = _sample(
        engine, sampler.sampler_id, sample_request(prompt, max_tokens=10, temperature=1.0, seed=1)
    )
    tokens = result.sequences[0].tokens
    train = engine.forward_backward("full", fwd([sft_datum(prompt + tokens)]), backward=False)
    assert result.sequences[0].logprobs == pytest.approx(
        train.loss_fn_outputs[0]["logprobs"].data[len(prompt) - 1 :], abs=FP32_LOGPROB_ATOL
    )
