"""A `forward` over many datums, sent as a few requests that each stay within a token budget.

Scoring a whole RL step (every judge prompt, every trained sequence) in one pass is what makes it
cheap, but a server refuses a request over its `max_tokens_per_request`. The datums are cut, in
order, into pieces of at most `max_tokens` tokens; every piece is submitted before any is awaited
(a training client runs its calls in order, so the server never waits for the client), and the
outputs come back in the datums' order. The cut depends only on the datums, so the same data
always makes the same passes.
"""

from __future__ import annotations

from collections.abc import Sequence

from cookbook.client.abstract import TrainingClient
from cookbook.client.futures import APIFuture
from cookbook.client.types import Datum, ForwardBackwardOutput, LossFnOutput, LossFnType

FORWARD_TOKENS_PER_REQUEST = 32 * 1024
"""A quarter of the server's default `max_tokens_per_request`: room for long prompts, few requests."""


def cut_by_tokens(data: Sequence[Datum], max_tokens: int) -> list[list[Datum]]:
    """Consecutive pieces of `data` of at most `max_tokens` tokens each (a longer datum goes alone)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    pieces: list[list[Datum]] = []
    tokens = 0
    for datum in data:
        length = datum.model_input.length
        if not pieces or tokens + length > max_tokens:
            pieces.append([])
            tokens = 0
        pieces[-1].append(datum)
        tokens += length
    return pieces


async def submit_forward(
    client: TrainingClient,
    data: Sequence[Datum],
    loss_fn: LossFnType,
    max_tokens: int = FORWARD_TOKENS_PER_REQUEST,
) -> list[APIFuture[ForwardBackwardOutput]]:
    """Queue the `forward` of every piece of `data` (read them with `read_outputs`)."""
    return [await client.forward_async(piece, loss_fn) for piece in cut_by_tokens(data, max_tokens)]


async def read_outputs(futures: Sequence[APIFuture[ForwardBackwardOutput]], count: int) -> list[LossFnOutput]:
    """The loss_fn outputs of queued pieces, in order; `count` datums were sent."""
    outputs: list[LossFnOutput] = []
    for future in futures:
        outputs += (await future).loss_fn_outputs
    if len(outputs) != count:
        raise ValueError(f"forward returned {len(outputs)} outputs for {count} datums")
    return outputs


async def forward_outputs(
    client: TrainingClient,
    data: Sequence[Datum],
    loss_fn: LossFnType,
    max_tokens: int = FORWARD_TOKENS_PER_REQUEST,
) -> list[LossFnOutput]:
    """Every datum's loss_fn output of a `forward` pass, in order."""
    return await read_outputs(await submit_forward(client, data, loss_fn, max_tokens), len(data))
