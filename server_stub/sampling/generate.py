"""Batched generation with a KV cache: one prefill per distinct prompt, then one decode step per token.

Distinct prompts are left-padded into one batch and prefilled once, however many requests share
them (an RL group sends its prompt once per rollout, so one prefill instead of one per request
makes a group's requests cost about what one request with that many samples costs); the cache
is then expanded to the `num_samples` rows of
each request, and every decode step advances all rows together (attention mask and per-row
position ids keep the padding invisible). Rows that finish keep decoding until enough of them have
finished to be worth dropping from the batch (cache rows included); their surplus tokens are cut
off at the end. Prompt logprobs come from the prefill's logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.logprobs import gather_logprobs
from server_stub.models.token_bytes import TokenBytes
from server_stub.sampling.stops import StopTracker
from server_stub.sampling.token_choice import RowSettings, choose_tokens

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

    from server_stub.sampling.requests import PreparedRequest

INITIAL_ROOM = 128  # KV positions reserved past the prompt at first; the cache doubles when it needs more
COMPACT_FRACTION = 0.75  # drop finished rows once at least a quarter of the batch is done ...
COMPACT_MIN_ROWS = 8  # ... and that is at least this many rows


def _prompt_outputs(
    logits: torch.Tensor, offset: int, request: PreparedRequest
) -> tuple[list | None, list | None]:
    """prompt_logprobs and topk_prompt_logprobs for one prompt from its prefill logits [Lp, V]."""
    import torch

    if not request.prompt_logprobs and not request.topk_prompt_logprobs:
        return None, None
    predicting = logits[offset:-1].float()  # position i predicts prompt token i + 1
    tokens = torch.tensor(request.prompt[1:], device=logits.device).unsqueeze(-1)
    prompt_lp: list | None = None
    if request.prompt_logprobs:
        prompt_lp = [None, *gather_logprobs(predicting, tokens).squeeze(-1).tolist()]
    topk: list | None = None
    if request.topk_prompt_logprobs:
        values, ids = torch.log_softmax(predicting, dim=-1).topk(request.topk_prompt_logprobs, dim=-1)
        topk = [
            None,
            *[list(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)],
        ]
    return prompt_lp, topk


@dataclass
class _Prefill:
    """The prompts' pass: the cache (already fanned out to one row per sample) and what follows from it."""

    cache: DynamicCache
    logits: torch.Tensor  # [rows, V] fp32: the distribution of each row's first new token
    prompt_mask: torch.Tensor  # [rows, width] 1 on real prompt tokens (left padding is 0)
    next_position: torch.Tensor  # [rows] position id of each row's first new token
    padded: bool  # prompts differ in length, so attention needs the mask
    prompt_outputs: list[
        tuple[list | None, list | None]
    ]  # per request: prompt logprobs, top-k prompt logprobs


def _prefill(
    module: torch.nn.Module, requests: list[PreparedRequest], pad_id: int, room: int, device: torch.device
) -> _Prefill:
    import torch

    from server_stub.sampling.kv_cache import sampling_cache

    distinct: dict[tuple[int, ...], int] = {}  # prompt -> its row in the prefill batch
    owner = [distinct.setdefault(tuple(req.prompt), len(distinct)) for req in requests]
    lengths = [len(prompt) for prompt in distinct]
    width = max(lengths)
    ids = torch.full((len(distinct), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(distinct), width), dtype=torch.int64)
    for j, prompt in enumerate(distinct):
        ids[j, width - lengths[j] :] = torch.tensor(prompt, dtype=torch.int64)
        mask[j, width - lengths[j] :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)
    padded = any(n != width for n in lengths)
    want_prompt = any(r.prompt_logprobs or r.topk_prompt_logprobs for r in requests)
    cache = sampling_cache(module.config, width + room)
    out = module(
        input_ids=ids,
        attention_mask=mask if padded else None,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=0 if want_prompt else 1,
    )
    prompt_outputs = [
        _prompt_outputs(out.logits[owner[i]], width - lengths[owner[i]], req)
        for i, req in enumerate(requests)
    ]
    rows = [owner[i] for i, req in enumerate(requests) for _ in range(req.num_samples)]
    row_job = torch.tensor(rows, device=device)
    if rows != list(range(len(distinct))):
        cache.reorder_cache(row_job)  # every sample continues from its prompt's one prefill
    return _Prefill(
        cache=cache,
        logits=out.logits[:, -1, :].float()[row_job],
        prompt_mask=mask[row_job],
        next_position=positions[row_job, -1] + 1,
        padded=padded,
        prompt_outputs=prompt_outputs,
    )


def generate(
    module: torch.nn.Module,
    requests: list[PreparedRequest],
    token_bytes: TokenBytes,
    vocab_size: int,
    pad_id: int,
) -> list[types.SampleResponse]:
    """Sample every request's `num_samples` continuations in one batch (call under inference mode)."""
    import torch

    device = next(module.parameters()).device
    row_max = torch.tensor(
        [req.max_tokens for req in requests for _ in range(req.num_samples)], device=device
    )
    steps = int(row_max.max())
    pre = _prefill(module, requests, pad_id, min(steps, INITIAL_ROOM), device)
    stops = StopTracker(requests, token_bytes, vocab_size, device)
    num_rows, width = pre.prompt_mask.shape
    tokens = torch.zeros((num_rows, steps), dtype=torch.int64, device=device)
    logprobs = torch.zeros((num_rows, steps), dtype=torch.float32, device=device)
    length = torch.zeros(num_rows, dtype=torch.int64, device=device)
    stopped = torch.zeros(num_rows, dtype=torch.bool, device=device)
    done = torch.zeros(num_rows, dtype=torch.bool, device=device)
    # The decoding batch: which original rows it holds, and their settings, masks and positions.
    live = torch.arange(num_rows, device=device)
    settings = RowSettings.build(requests, vocab_size, device)
    attention = torch.cat([pre.prompt_mask, pre.prompt_mask.new_ones((num_rows, steps))], dim=1)
    next_position, logits = pre.next_position, pre.logits
    for step in range(steps):
        new, new_lp = choose_tokens(logits, settings, step)
        tokens[live, step], logprobs[live, step] = new, new_lp
        active = ~done
        hit = stops.hits(tokens[:, step], tokens, step) & active
        length = torch.where(active, step + 1, length)
        stopped |= hit
        done |= hit | (row_max <= step + 1)
        if step + 1 == steps or bool(done.all()):
            break
        keep = ~done[live]
        kept = int(keep.sum())
        if kept <= COMPACT_FRACTION * live.numel() and live.numel() - kept >= COMPACT_MIN_ROWS:
            index = keep.nonzero().flatten()  # drop finished rows: they would only waste compute
            live, settings, new = live[index], settings.select(index), new[index]
            attention, next_position = attention[index], next_position[index]
            pre.cache.reorder_cache(index)
        out = module(
            input_ids=new.unsqueeze(-1),
            attention_mask=attention[:, : width + step + 1] if pre.padded else None,
            position_ids=(next_position + step).unsqueeze(-1),
            cache=pre.cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :].float()
    return _responses(requests, pre.prompt_outputs, tokens, logprobs, length, stopped)


def _responses(
    requests: list[PreparedRequest],
    prompt_outputs: list[tuple[list | None, list | None]],
    tokens: torch.Tensor,
    logprobs: torch.Tensor,
    length: torch.Tensor,
    stopped: torch.Tensor,
) -> list[types.SampleResponse]:
    """Cut each row at its own length (rows decode in lockstep past their stop) and group rows by request."""
    tokens_cpu, logprobs_cpu = tokens.cpu().tolist(), logprobs.cpu().tolist()
    length_cpu, stopped_cpu = length.cpu().tolist(), stopped.cpu().tolist()
    responses, row = [], 0
    for req, (prompt_lp, topk) in zip(requests, prompt_outputs, strict=True):
        sequences = []
        for _ in range(req.num_samples):
            n = length_cpu[row]
            sequences.append(
                types.SampledSequence(
                    stop_reason="stop" if stopped_cpu[row] else "length",
                    tokens=tokens_cpu[row][:n],
                    logprobs=logprobs_cpu[row][:n],
                )
            )
            row += 1
        responses.append(
            types.SampleResponse(sequences=sequences, prompt_logprobs=prompt_lp, topk_prompt_logprobs=topk)
        )
    return responses
