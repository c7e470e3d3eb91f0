"""Sampling building blocks in isolation: the counter-based RNG, stop tracking, the KV cache, snapshots."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from server_stub.models.builtin_tokenizer import builtin_tokenizer_json
from server_stub.models.lora_hub import LoraSpec
from server_stub.models.tiny_llama import build_tiny_llama
from server_stub.models.token_bytes import TokenBytes
from server_stub.sampling.kv_cache import RoomyLayer, sampling_cache
from server_stub.sampling.requests import PreparedRequest
from server_stub.sampling.rng import fmix32, row_key, uniforms
from server_stub.sampling.snapshots import SnapshotStore
from server_stub.sampling.stops import StopTracker


def test_rng_hash_is_identical_for_ints_and_tensors() -> None:
    rng = random.Random(0)
    values = [rng.getrandbits(32) for _ in range(5000)] + [0, 0xFFFFFFFF]
    assert fmix32(torch.tensor(values, dtype=torch.int64)).tolist() == [fmix32(v) for v in values]


def test_uniforms_are_uniform_and_depend_on_seed_row_and_step() -> None:
    keys = torch.tensor([row_key(7, r) for r in range(20000)])
    u = uniforms(keys, 0)
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    assert torch.histc(u.float(), bins=10, min=0, max=1).min() > 1800
    assert not torch.equal(u, uniforms(keys, 1))
    assert row_key(7, 0) != row_key(8, 0) != row_key(7, 1)
    assert row_key(1, 0) != row_key(1 + (1 << 32), 0)  # high seed bits matter too
    assert torch.equal(uniforms(keys[5:6], 3), uniforms(keys, 3)[5:6])  # a row's draw ignores its neighbours


def _request(
    stop_strings: tuple[bytes, ...] = (), stop_ids: tuple[int, ...] = (), n: int = 1
) -> PreparedRequest:
    return PreparedRequest(
        prompt=[1],
        num_samples=n,
        max_tokens=20,
        temperature=1.0,
        top_k=-1,
        top_p=1.0,
        seed=0,
        stop_token_ids=stop_ids,
        stop_strings=stop_strings,
        prompt_logprobs=False,
        topk_prompt_logprobs=0,
    )


def _run(tracker: StopTracker, rows: list[list[int]]) -> list[int | None]:
    """Feed each row's tokens step by step; return the step at which each row first stopped."""
    steps = max(len(r) for r in rows)
    history = torch.zeros((len(rows), steps), dtype=torch.int64)
    first: list[int | None] = [None] * len(rows)
    for step in range(steps):
        new = torch.tensor([r[step] if step < len(r) else 1 for r in rows])
        history[:, step] = new
        for i, hit in enumerate(tracker.hits(new, history, step).tolist()):
            if hit and first[i] is None:
                first[i] = step
    return first


def test_stop_strings_across_tokens_inside_tokens_and_unicode() -> None:
    tok = Tokenizer.from_str(builtin_tokenizer_json())
    token_bytes = TokenBytes(builtin_tokenizer_json())
    texts = [" 3 plus 4 is 7.\n\nUser: more", " check ✓ done", " no stop here at all", " 3 plus 4 is 7."]
    rows = [tok.encode(t).ids for t in texts]
    requests = [
        _request((b"\n\nUser:",)),
        _request(("✓".encode(),)),
        _request((b"\n\nUser:", b"zzz")),
        _request(stop_ids=(tok.encode(" plus").ids[0],)),
    ]
    tracker = StopTracker(requests, token_bytes, 512, torch.device("cpu"))
    first = _run(tracker, rows)
    decoded = [tok.decode(r[: s + 1]) if s is not None else None for r, s in zip(rows, first, strict=True)]
    assert decoded[0] == " 3 plus 4 is 7.\n\nUser:"
    assert decoded[1] is not None and decoded[1].endswith("✓") and "✓" not in tok.decode(rows[1][: first[1]])
    assert first[2] is None
    assert decoded[3] == " 3 plus"


def test_roomy_cache_matches_the_dynamic_cache_through_fan_out_growth_and_row_drops() -> None:
    from transformers import DynamicCache

    model = build_tiny_llama(torch.device("cpu"), torch.float32)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    results = []
    for cache in (DynamicCache(config=model.config), sampling_cache(model.config, 5)):
        steps = []
        with torch.inference_mode():
            steps.append(model(input_ids=ids, cache=cache, use_cache=True).logits)
            cache.reorder_cache(torch.tensor([0, 0, 1]))  # fan out: 3 rows
            for token in (3, 4, 5):  # positions 5..7: beyond the initial room of 5
                steps.append(model(input_ids=torch.full((3, 1), token), cache=cache, use_cache=True).logits)
            cache.reorder_cache(torch.tensor([2, 0]))  # drop a row
            steps.append(model(input_ids=torch.tensor([[6], [7]]), cache=cache, use_cache=True).logits)
        results.append(steps)
    roomy = sampling_cache(model.config, 5).layers[0]
    assert isinstance(roomy, RoomyLayer)
    for dynamic, ours in zip(*results, strict=True):
        assert torch.allclose(dynamic, ours, atol=1e-5)


def test_snapshot_store_spills_and_reloads(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "spill", torch.device("cpu"), max_resident_full=2, max_resident_lora=1)
    full = [store.add("m", None, {"w": torch.full((3,), float(i))}) for i in range(4)]
    lora = [store.add("m", LoraSpec(rank=4), {"a": torch.full((2,), 10.0 + i)}) for i in range(2)]
    assert [store.is_resident(s) for s in full] == [False, False, True, True]
    assert [store.is_resident(s) for s in lora] == [False, True]
    for i, snapshot_id in enumerate(full):
        assert torch.equal(store.tensors(snapshot_id)["w"], torch.full((3,), float(i)))
    assert torch.equal(store.tensors(lora[0])["a"], torch.full((2,), 10.0))
    assert sum(store.is_resident(s) for s in full) == 2
    store.discard(full[0])
    with pytest.raises(KeyError):
        store.get(full[0])
