"""A sampler's requests cut into decoding batches whose rows and KV cache stay within bounds.

A batch's cache holds every row at the batch's longest prompt plus its largest `max_tokens`
(prompts are left-padded to one width), so one long prompt among many short ones multiplies the
cache. Requests that fit together stay one batch in arrival order; otherwise they are sorted by
prompt length, longest first, so each batch pads only to its own longest prompt, and cut greedily.
"""

from __future__ import annotations

from collections.abc import Sequence

from server_stub.sampling.requests import PreparedRequest


def cache_tokens(requests: Sequence[PreparedRequest]) -> int:
    """Positions the KV cache of one batch of `requests` holds (rows x padded prompt + new tokens)."""
    rows = sum(r.num_samples for r in requests)
    return rows * (max(len(r.prompt) for r in requests) + max(r.max_tokens for r in requests))


def sampling_batches(
    requests: Sequence[PreparedRequest], max_rows: int, max_cache_tokens: int
) -> list[list[int]]:
    """Indices of `requests` per batch: at most `max_rows` rows and `max_cache_tokens` cache positions
    each (a request over either alone is a batch of its own)."""
    order = list(range(len(requests)))
    if order and cache_tokens(requests) > max_cache_tokens:
        order.sort(key=lambda i: -len(requests[i].prompt))
    batches: list[list[int]] = []
    rows = width = new_tokens = 0  # the last batch's rows, longest prompt and largest max_tokens
    for index in order:
        request = requests[index]
        grown = (
            rows + request.num_samples,
            max(width, len(request.prompt)),
            max(new_tokens, request.max_tokens),
        )
        if batches and grown[0] <= max_rows and grown[0] * (grown[1] + grown[2]) <= max_cache_tokens:
            batches[-1].append(index)
            rows, width, new_tokens = grown
        else:
            batches.append([index])
            rows, width, new_tokens = request.num_samples, len(request.prompt), request.max_tokens
    return batches
