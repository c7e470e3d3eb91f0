"""Datums -> one right-padded batch of tensors, after validating them.

The web layer validates requests at POST time, but the engine must never crash or corrupt a model
on bad input either, so the same checks (`validation.check_forward_backward_input`: token ranges,
lengths, shapes, finiteness, the inputs each loss needs) run again here before any computation.
Sequences are right-padded: with causal attention the padding cannot influence real positions,
so no attention mask is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cookbook.client import types
from server_stub.engine import ModelLimits
from server_stub.training.losses import LOSSES, PER_TARGET_INPUTS, TARGET_INPUT
from server_stub.training.shared_prefix import SharedPrefixRows, pack_rows, packed_length, prefix_groups
from server_stub.validation import check_forward_backward_input

if TYPE_CHECKING:
    import torch


@dataclass
class TrainBatch:
    """Right-padded tensors for B datums of up to L positions and up to K targets per position."""

    input_ids: torch.Tensor  # [B, L] int64
    targets: torch.Tensor  # [B, L, K] int64
    valid: torch.Tensor  # [B, L, K] bool: real (datum, position, target) entries
    inputs: dict[str, torch.Tensor]  # float loss inputs: weights [B, L, K]; the others [B, L, 1]
    target_shapes: list[tuple[int, ...]]  # each datum's target_tokens shape, to cut outputs back out
    config: dict[str, float]  # the loss's settings: request values over defaults
    last_positions: torch.Tensor  # [B] int64: each datum's last real position (where a reward head reads)
    shared: SharedPrefixRows | None = None  # the rows packed by shared prefix, where that pays


CHUNK_COST_TOKENS = 192
"""A chunk's fixed cost (one more forward and backward call) in padded tokens of work, the best of
64/128/192 for the built-in model with 2 threads on the pipeline's batches (bench/README.md)."""


def length_chunks(
    lengths: Sequence[int], token_budget: int, chunk_cost: int = CHUNK_COST_TOKENS
) -> list[list[int]]:
    """Row indices sorted longest first and cut where that minimises the work: each chunk pads only to
    its own longest row and costs `chunk_cost` padded tokens more, and no chunk of several rows holds
    more than `token_budget` padded tokens.

    Why: a right-padded batch pays for its longest sequence in every row; on a CPU, sorted chunks
    are faster (bench/bench_chunked_pass.py), and more, smaller chunks lose that to per-chunk overhead.
    The cuts are found exactly (dynamic programming over the sorted rows: a chunk ending at row `end`
    starts at the `begin` that minimises the work of rows before it plus this chunk's).
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    longest_first = [lengths[i] for i in order]
    work = [0.0] + [math.inf] * len(order)  # work[end]: least work for the first `end` sorted rows
    start = [0] * (len(order) + 1)  # start[end]: where the last chunk of that best split begins
    for end in range(1, len(order) + 1):
        for begin in range(end - 1, -1, -1):
            padded = (end - begin) * longest_first[begin]
            if end - begin > 1 and padded > token_budget:
                break  # an earlier begin only adds rows and a longer longest row
            cost = work[begin] + padded + chunk_cost
            if cost <= work[end]:  # on a tie, the fewer and larger chunks
                work[end], start[end] = cost, begin
    chunks: list[list[int]] = []
    end = len(order)
    while end:
        chunks.append(order[start[end] : end])
        end = start[end]
    return chunks[::-1]


def within_tokens(rows: list[int], lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """`rows` as they are if they pad to at most `max_tokens` tokens; else sorted longest first and
    cut greedily into pieces that each do (a row longer than that alone), so memory never grows with rows."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not rows or len(rows) * max(lengths[i] for i in rows) <= max_tokens:
        return [rows] if rows else []
    pieces: list[list[int]] = []
    for row in sorted(rows, key=lambda i: -lengths[i]):
        if pieces and (len(pieces[-1]) + 1) * lengths[pieces[-1][0]] <= max_tokens:
            pieces[-1].append(row)
        else:
            pieces.append([row])
    return pieces


def build_batches(
    fwd: types.ForwardBackwardInput,
    limits: ModelLimits,
    device: torch.device,
    token_budget: int | None,
    max_tokens: int,
    share_prefixes: bool = False,
) -> list[tuple[list[int], TrainBatch]]:
    """Validate every datum, then pad them into length-sorted chunks (see `length_chunks`;
    `token_budget=None`: one chunk of every row), each cut further to at most `max_tokens` padded
    tokens (`within_tokens`), each with the request's row indices it holds.

    With `share_prefixes`, rows that begin alike are grouped first (`shared_prefix.prefix_groups`),
    and a group, packed into one row, is what the chunks sort and cut; each chunk packs its groups
    where that saves enough (`shared_prefix.pack_rows`). Without, every row is a group of its own."""
    check_forward_backward_input(fwd, limits)
    if share_prefixes:
        tokens = [d.model_input.to_ints() for d in fwd.data]
        groups = prefix_groups(tokens, max_tokens)
        sizes = [packed_length(tokens, members, shared) for members, shared in groups]
    else:
        groups = [([row], 0) for row in range(len(fwd.data))]
        sizes = [d.model_input.length for d in fwd.data]
    every_group = list(range(len(groups)))
    chunks = [every_group] if token_budget is None else length_chunks(sizes, token_budget)
    pieces = [piece for chunk in chunks for piece in within_tokens(chunk, sizes, max_tokens)]
    batches = []
    for piece in pieces:
        rows = [row for g in piece for row in groups[g][0]]
        local = {row: i for i, row in enumerate(rows)}
        piece_groups = [([local[row] for row in groups[g][0]], groups[g][1]) for g in piece]
        whole = rows == list(range(len(fwd.data)))
        part = fwd if whole else fwd.model_copy(update={"data": [fwd.data[i] for i in rows]})
        batches.append((rows, _pad(part, device, piece_groups)))
    return batches


def _pad(
    fwd: types.ForwardBackwardInput, device: torch.device, groups: list[tuple[list[int], int]]
) -> TrainBatch:
    """Right-pad already validated datums into one batch, packed by `groups` where that pays."""
    import torch

    loss = LOSSES[fwd.loss_fn]
    config = {**loss.config_defaults, **(fwd.loss_fn_config or {})}
    float_keys = [k for k in loss.inputs if k != TARGET_INPUT]
    tokens = [np.asarray(d.model_input.to_ints(), dtype=np.int64) for d in fwd.data]
    arrays = [{k: t.to_numpy() for k, t in d.loss_fn_inputs.items()} for d in fwd.data]
    batch, length = len(tokens), max(t.size for t in tokens)
    # Score losses send no target_tokens: their datums count as one (unused) target per position.
    shapes = [
        tuple(a[TARGET_INPUT].shape) if TARGET_INPUT in a else (t.size,)
        for t, a in zip(tokens, arrays, strict=True)
    ]
    width = max(shape[1] if len(shape) == 2 else 1 for shape in shapes)
    input_ids = np.zeros((batch, length), dtype=np.int64)
    targets = np.zeros((batch, length, width), dtype=np.int64)
    valid = np.zeros((batch, length, width), dtype=bool)
    floats = {
        k: np.zeros((batch, length, width if k in PER_TARGET_INPUTS else 1), dtype=np.float32)
        for k in float_keys
    }
    # Optional per-token inputs (clip thresholds) default to the loss's scalar setting where absent.
    for key in loss.optional_inputs:
        floats[key][:] = config[key]
    for row, (ids, values) in enumerate(zip(tokens, arrays, strict=True)):
        n = ids.size
        input_ids[row, :n] = ids
        if TARGET_INPUT in values:
            tgt = values[TARGET_INPUT].reshape(n, -1)
            targets[row, :n, : tgt.shape[1]] = tgt
            valid[row, :n, : tgt.shape[1]] = True
        for key in float_keys:
            if key in values:
                column = values[key].reshape(n, -1)
                floats[key][row, :n, : column.shape[1]] = column
    return TrainBatch(
        input_ids=torch.from_numpy(input_ids).to(device),
        targets=torch.from_numpy(targets).to(device),
        valid=torch.from_numpy(valid).to(device),
        inputs={k: torch.from_numpy(v).to(device) for k, v in floats.items()},
        target_shapes=shapes,
        config=config,
        last_positions=torch.tensor([t.size - 1 for t in tokens], dtype=torch.int64, device=device),
        shared=pack_rows([t.tolist() for t in tokens], groups, device) if len(groups) < batch else None,
    )
