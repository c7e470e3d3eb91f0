"""Rows of a training chunk that begin with the same tokens run those tokens once.

A judge's batch repeats each prompt: a preference-model pair is one prompt with its two answers in
both orders, and an RL step judges every ordered pair of a prompt's answers. Such rows are packed
into one row, the shared prefix first and each row's own rest after it, with a mask that lets every
rest see the prefix and itself only and with each token at the position it has in its own row. The
body then runs once over the packed rows, and its hidden states are gathered back into the chunk's
[B, L, H] layout, so the output layer, the losses and their gradients see exactly the rows they would
have seen (the prefix's gradient is the sum over its rows, as before; values agree to rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MIN_SHARED_TOKENS = 8
"""Rows that share fewer tokens than this (a chat template's first markers, say) are not grouped."""

MAX_PACKED_OVER_LONGEST = 2.0
"""A packed row is at most this many times as long as its longest row: its masked attention grows with
the square of its length (on the built-in model, pairs of preference-model rows and triples of RL
judge rows are what pays, bench/README.md)."""

MIN_SAVED_FRACTION = 0.15
"""A chunk is packed only when packing removes at least this fraction of its padded tokens: the masked
attention path is slower per token than the plain causal one (bench/README.md, "Shared prefixes")."""

PACKING_MODEL_TYPES = frozenset({"llama"})
"""Model families whose attention takes a boolean [B, 1, L, L] mask and explicit position ids as given
(checked against the unpacked rows by tests); any other model runs its rows unpacked."""


@dataclass
class SharedPrefixRows:
    """A chunk's rows packed by shared prefix, and where each unpacked position reads its hidden state."""

    input_ids: torch.Tensor  # [R, P] int64: each packed row, right-padded
    position_ids: torch.Tensor  # [R, P] int64: each token's position in its own unpacked row
    mask: torch.Tensor  # [R, 1, P, P] bool: True where a query position may attend to a key position
    gather: torch.Tensor  # [B, L] int64: for each unpacked position, its index in the flat [R * P] states


def supports_shared_prefix(module: torch.nn.Module) -> bool:
    """Whether `module`'s family is one whose attention honours a packed row's mask and positions."""
    config = module.config
    return config.model_type in PACKING_MODEL_TYPES and config._attn_implementation in ("sdpa", "eager")


def _common_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def prefix_groups(
    rows: Sequence[Sequence[int]], max_tokens: int | None = None
) -> list[tuple[list[int], int]]:
    """Row indices grouped by a shared prefix, each group with its prefix length (0: a row alone).

    Rows are visited in token order, so rows with a common beginning are neighbours. A row joins the
    group before it while the tokens the group saves ((rows - 1) x prefix) do not shrink and the packed
    row stays within `MAX_PACKED_OVER_LONGEST` of its longest row and within `max_tokens` (a pass's
    largest piece: packing never makes a piece that the rows alone would not have); the prefix always
    leaves each row at least its last token of its own.
    """
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    groups: list[tuple[list[int], int]] = []
    for index in order:
        row = rows[index]
        if groups:
            members, shared = groups[-1]
            first = rows[members[0]]
            limit = min(len(row), len(first)) - 1
            if len(members) > 1:
                limit = min(limit, shared)
            common = _common_length(first, row, limit)
            joined = [*members, index]
            longest = max(len(rows[i]) for i in joined)
            size = packed_length(rows, joined, common)
            if (
                common >= MIN_SHARED_TOKENS
                and len(members) * common >= (len(members) - 1) * shared
                and size <= MAX_PACKED_OVER_LONGEST * longest
                and (max_tokens is None or size <= max_tokens)
            ):
                groups[-1] = (joined, common)
                continue
        groups.append(([index], 0))
    return groups


def packed_length(rows: Sequence[Sequence[int]], members: Sequence[int], shared: int) -> int:
    """Tokens of the packed row of `members` (indices into `rows`) around a prefix of `shared` tokens."""
    return shared + sum(len(rows[i]) - shared for i in members)


def pack_rows(
    rows: Sequence[Sequence[int]], groups: Sequence[tuple[list[int], int]], device: torch.device
) -> SharedPrefixRows | None:
    """`rows` packed as `groups` says (`prefix_groups` of these rows), or None when that saves less than
    `MIN_SAVED_FRACTION` of their padded tokens (or nothing is shared)."""
    import numpy as np
    import torch

    if len(groups) == len(rows):
        return None
    width = max(packed_length(rows, members, shared) for members, shared in groups)
    plain_width = max(len(row) for row in rows)
    if len(groups) * width > (1.0 - MIN_SAVED_FRACTION) * len(rows) * plain_width:
        return None
    # Filled in numpy and converted once: a torch call per slice was most of the packing's time (bench/README.md).
    input_ids = np.zeros((len(groups), width), dtype=np.int64)
    position_ids = np.zeros((len(groups), width), dtype=np.int64)
    # Which part of its packed row each token is: 0 the prefix, k the k-th row's own tokens, -1 padding.
    part = np.full((len(groups), width), -1, dtype=np.int64)
    gather = np.zeros((len(rows), plain_width), dtype=np.int64)
    for g, (members, shared) in enumerate(groups):
        flat = g * width
        input_ids[g, :shared] = rows[members[0]][:shared]
        position_ids[g, :shared] = np.arange(shared)
        part[g, :shared] = 0
        start = shared
        for k, index in enumerate(members, start=1):
            row = rows[index]
            end = start + len(row) - shared
            input_ids[g, start:end] = row[shared:]
            position_ids[g, start:end] = np.arange(shared, len(row))
            part[g, start:end] = k
            gather[index, :shared] = np.arange(flat, flat + shared)
            gather[index, shared : len(row)] = np.arange(flat + start, flat + end)
            gather[index, len(row) :] = flat + end - 1  # padding reads the row's last token
            start = end
    causal = np.tri(width, dtype=bool)
    mask = causal & ((part[:, :, None] == part[:, None, :]) | (part[:, None, :] == 0))
    return SharedPrefixRows(
        input_ids=torch.from_numpy(input_ids).to(device),
        position_ids=torch.from_numpy(position_ids).to(device),
        mask=torch.from_numpy(mask[:, None]).to(device),
        gather=torch.from_numpy(gather).to(device),
    )


def unpacked_hidden(decoder: torch.nn.Module, shared: SharedPrefixRows) -> torch.Tensor:
    """[B, L, H]: the decoder's last hidden states for the unpacked rows, computed on the packed ones."""
    states = decoder(
        input_ids=shared.input_ids,
        position_ids=shared.position_ids,
        attention_mask=shared.mask,
        use_cache=False,
    ).last_hidden_state
    # index_select, not indexing: its backward adds a prefix's gradients in a fixed order, where an
    # indexed read's backward adds them with parallel atomic adds (run-to-run rounding differences).
    flat = states.reshape(-1, states.shape[-1]).index_select(0, shared.gather.reshape(-1))
    return flat.reshape(*shared.gather.shape, states.shape[-1])
