"""The prompts' pass: one prefill per distinct prompt, in pieces of bounded size, and prompt logprobs.

Distinct prompts are left-padded to one width and go through the model in chunks of rows of at
most `max_tokens` padded tokens (a longer prompt alone). Each chunk fills its own KV cache and the
caches are joined row-wise, so decoding sees the cache one pass would have built; a batch that
samples one token per row never decodes, so it keeps no cache at all. The output layer runs only
where an answer needs it: the last position of every prompt (the first new token's distribution)
and, for the prompts whose requests ask for prompt logprobs, the positions that predict each
prompt token, those in pieces of at most `max_tokens` positions. So vocabulary-wide logits never
exist for more than `max_tokens` positions at once, however many rows the batch holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server_stub.logprobs import gather_logprobs, topk_logprobs
from server_stub.sampling.kv_cache import join_rows, sampling_cache

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

    from server_stub.sampling.requests import PreparedRequest

PromptOutputs = tuple[list | None, list | None]  # a request's prompt logprobs, top-k prompt logprobs

# Config fields that make a model's logits more than its output layer's product (none of the families served).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@dataclass
class Prefill:
    """The prompts' pass: the cache (already fanned out to one row per sample) and what follows from it."""

    cache: DynamicCache | None  # None when no row decodes past its first token
    logits: torch.Tensor  # [rows, V] fp32: the distribution of each row's first new token
    prompt_mask: torch.Tensor  # [rows, width] 1 on real prompt tokens (left padding is 0)
    next_position: torch.Tensor  # [rows] position id of each row's first new token
    padded: bool  # prompts differ in length, so attention needs the mask
    prompt_outputs: list[PromptOutputs]  # per request


@dataclass
class _Scored:
    """One distinct prompt's answers: logprob of each prompt token, and the top-k at each position."""

    logprobs: list[float]
    topk: list[list[tuple[int, float]]]  # the largest k any of its requests asked for


def _output_layer(module: torch.nn.Module) -> torch.nn.Module:
    """The layer that turns the body's last hidden states into logits, and nothing after it."""
    transforms = [name for name in _LOGIT_TRANSFORMS if getattr(module.config, name, None) not in (None, 1.0)]
    if transforms:
        raise NotImplementedError(f"prompt logprobs for a model whose logits apply {transforms}")
    return module.get_output_embeddings()


def _score(
    head: torch.nn.Module, hidden: torch.Tensor, targets: list[int], topk: int, max_tokens: int
) -> _Scored:
    """Logprobs of `targets` from `hidden` [n, H] (position i predicts targets[i]), `max_tokens` at a time."""
    import torch

    scored = _Scored(logprobs=[], topk=[])
    target_ids = torch.tensor(targets, device=hidden.device).unsqueeze(-1)
    for start in range(0, len(targets), max_tokens):
        logits = head(hidden[start : start + max_tokens]).float()
        scored.logprobs.extend(
            gather_logprobs(logits, target_ids[start : start + max_tokens]).flatten().tolist()
        )
        if topk:
            values, ids = topk_logprobs(logits, topk)
            scored.topk.extend(
                list(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)
            )
    return scored


def _answer(request: PreparedRequest, scored: _Scored | None) -> PromptOutputs:
    """What `request` asked of its prompt's scores (the first token has no logprob: None)."""
    if scored is None:
        return None, None
    prompt_lp = [None, *scored.logprobs] if request.prompt_logprobs else None
    k = request.topk_prompt_logprobs
    topk = [None, *(pairs[:k] for pairs in scored.topk)] if k else None
    return prompt_lp, topk


class _HiddenStates:
    """Holds the body's last hidden states of the forward it hooks (the model then keeps only the last)."""

    def __init__(self, module: torch.nn.Module):
        self.states: torch.Tensor | None = None
        self._handle = module.get_decoder().register_forward_hook(self._keep)

    def _keep(self, _: torch.nn.Module, __: Any, output: Any) -> None:
        self.states = output.last_hidden_state

    def close(self) -> None:
        self._handle.remove()


def prefill(
    module: torch.nn.Module,
    requests: list[PreparedRequest],
    pad_id: int,
    room: int | None,
    device: torch.device,
    max_tokens: int,
) -> Prefill:
    """Run the distinct prompts of `requests`, with KV room for `room` new tokens (None: no cache)."""
    import torch

    distinct: dict[tuple[int, ...], int] = {}  # prompt -> its row in the prefill batch
    owner = [distinct.setdefault(tuple(req.prompt), len(distinct)) for req in requests]
    prompts = list(distinct)
    lengths = [len(prompt) for prompt in prompts]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(prompts), width), dtype=torch.int64)
    for j, prompt in enumerate(prompts):
        ids[j, width - lengths[j] :] = torch.tensor(prompt, dtype=torch.int64)
        mask[j, width - lengths[j] :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)
    padded = any(n != width for n in lengths)
    topk_of = [0] * len(prompts)  # per distinct prompt: the largest top-k asked; -1: logprobs only
    for req, j in zip(requests, owner, strict=True):
        if req.prompt_logprobs or req.topk_prompt_logprobs:
            topk_of[j] = max(topk_of[j], req.topk_prompt_logprobs, 0) or -1
    head = _output_layer(module) if any(topk_of) else None
    rows_per_chunk = max(1, max_tokens // width)
    caches: list[DynamicCache] = []
    last_logits: list[torch.Tensor] = []
    scored: dict[int, _Scored] = {}
    for start in range(0, len(prompts), rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        cache = sampling_cache(module.config, width + room) if room is not None else None
        hidden = _HiddenStates(module) if any(topk_of[chunk]) else None
        try:
            out = module(
                input_ids=ids[chunk],
                attention_mask=mask[chunk] if padded else None,
                position_ids=positions[chunk],
                cache=cache,
                use_cache=cache is not None,
                logits_to_keep=1,
            )
        finally:
            if hidden is not None:
                hidden.close()
        last_logits.append(out.logits[:, -1, :].float())
        if cache is not None:
            caches.append(cache)
        for j in range(start, min(start + rows_per_chunk, len(prompts))):
            if topk_of[j]:
                assert hidden is not None and hidden.states is not None and head is not None
                states = hidden.states[j - start, width - lengths[j] : -1]
                scored[j] = _score(head, states, list(prompts[j][1:]), max(topk_of[j], 0), max_tokens)
        del out, hidden
    prompt_outputs = [_answer(req, scored.get(j)) for req, j in zip(requests, owner, strict=True)]
    rows = [owner[i] for i, req in enumerate(requests) for _ in range(req.num_samples)]
    row_job = torch.tensor(rows, device=device)
    joined = join_rows(caches) if caches else None
    if joined is not None and rows != list(range(len(prompts))):
        joined.reorder_cache(row_job)  # every sample continues from its prompt's one prefill
    logits = torch.cat(last_logits) if len(last_logits) > 1 else last_logits[0]
    return Prefill(
        cache=joined,
        logits=logits[row_job],
        prompt_mask=mask[row_job],
        next_position=positions[row_job, -1] + 1,
        padded=padded,
        prompt_outputs=prompt_outputs,
    )
