"""One batched forward (and optionally backward) pass: logprobs of the targets, the loss, its gradient."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.engine import UserError
from server_stub.logprobs import gather_logprobs
from server_stub.sampling.prefill import _HiddenStates, _output_layer
from server_stub.training.losses import LOSSES, total_loss
from server_stub.training.recompute import layers_recomputed
from server_stub.training.shared_prefix import unpacked_hidden

if TYPE_CHECKING:
    import torch

    from server_stub.training.batch import TrainBatch


@dataclass
class PassResult:
    loss: float
    logprobs: list[types.TensorData]  # one per datum, shaped like its target_tokens


HEAD_PIECE_BYTES = 64 * 1024 * 1024
"""A pass whose vocabulary-wide fp32 logits would hold more than this runs its output layer in pieces
of positions this size: on a 49k vocabulary, one 1,536-token chunk's logits are 288 MiB, and the
LoRA'd output layer, the log-softmax and backward each add a copy."""


def target_logprobs(module: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    """[B, L, K] fp32 logprobs of every target under `module` (one forward for the whole batch)."""
    if batch.shared is not None:
        logits = _output_layer(module)(unpacked_hidden(module.get_decoder(), batch.shared))
    else:
        logits = module(input_ids=batch.input_ids, use_cache=False).logits
    return gather_logprobs(logits, batch.targets)


def head_piece_positions(vocab_size: int, rows: int) -> int:
    """Positions of each row per output-layer piece, so that a piece's logits fit `HEAD_PIECE_BYTES`."""
    return max(1, HEAD_PIECE_BYTES // (4 * vocab_size * rows))


def _body(module: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    """[B, L, H]: the body's last hidden states (the output layer runs on the last position only)."""
    if batch.shared is not None:
        return unpacked_hidden(module.get_decoder(), batch.shared)
    hidden = _HiddenStates(module)
    try:
        module(input_ids=batch.input_ids, use_cache=False, logits_to_keep=1)
    finally:
        hidden.close()
    assert hidden.states is not None
    return hidden.states


def _head_logprobs(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, step: int
) -> torch.Tensor:
    """[B, L, K] logprobs of `targets` from `hidden`, `step` positions of every row at a time."""
    import torch

    pieces = range(0, hidden.shape[1], step)
    return torch.cat(
        [gather_logprobs(head(hidden[:, s : s + step]), targets[:, s : s + step]) for s in pieces], dim=1
    )


ACTIVE_FRACTION_TO_SPLIT = 0.5
"""A backward pass runs the output layer's backward only where the loss has a gradient when at most this
fraction of a chunk's positions can have one: the split costs one more output-layer forward there."""


def _few_positions_train(loss_fn: str, batch: TrainBatch) -> bool:
    """Whether at most `ACTIVE_FRACTION_TO_SPLIT` of the chunk's positions can have a gradient, i.e. a
    nonzero `gradient_input` (an SFT prompt, a judge's comparison and an RL prompt have none); only a
    guess at which path is faster: the gradient itself decides where the output layer runs again."""
    loss = LOSSES[loss_fn]
    key = getattr(loss, "gradient_input", None)
    if key is None:
        return False
    active = batch.inputs[key].ne(0).any(-1)
    return int(active.sum()) <= ACTIVE_FRACTION_TO_SPLIT * active.numel()


def _pass_split_at_head(
    module: torch.nn.Module, batch: TrainBatch, loss_fn: str, backward: bool, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk's logprobs and loss with the output layer run apart from the body, `step` positions of
    every row at a time; with `backward` the gradient too: dloss/dlogprobs first, then the output layer
    again at only the positions where that is nonzero, backpropagated, then the body.

    Memory: one piece of logits at a time. Cost: one more output-layer forward, against its backward
    at every position where the loss has no gradient (most positions of an SFT, judge or RL batch)."""
    import torch

    head = _output_layer(module)
    if not backward:
        with torch.inference_mode():
            lp = _head_logprobs(head, _body(module, batch), batch.targets, step)
            return lp, total_loss(loss_fn, lp, batch)
    with torch.enable_grad():
        hidden = _body(module, batch)
        free = hidden.detach().requires_grad_()
        with torch.no_grad():
            lp = _head_logprobs(head, free, batch.targets, step)
        lp.requires_grad_()
        loss = total_loss(loss_fn, lp, batch)
    _refuse_non_finite(loss_fn, float(loss.detach()))
    loss.backward()
    assert lp.grad is not None
    rows, positions = lp.grad.ne(0).any(-1).nonzero(as_tuple=True)  # where the loss depends on a logprob
    piece_tokens = step * batch.input_ids.shape[0]
    with torch.enable_grad():
        for s in range(0, rows.numel(), piece_tokens):
            at = rows[s : s + piece_tokens], positions[s : s + piece_tokens]
            piece = gather_logprobs(head(free[at]), batch.targets[at])
            piece.backward(lp.grad[at])
    # No active position still backpropagates zeros, so every trainable tensor gets a (zero) gradient as before.
    hidden.backward(free.grad if free.grad is not None else torch.zeros_like(hidden))
    return lp.detach(), loss.detach()


def _over(batch: TrainBatch, tokens: int | None) -> bool:
    """Whether the padded batch holds more than `tokens` tokens (None: no limit)."""
    return tokens is not None and batch.input_ids.numel() > tokens


def _refuse_non_finite(loss_fn: str, loss_value: float) -> None:
    if not math.isfinite(loss_value):
        raise UserError(
            f"the {loss_fn} loss is not finite ({loss_value}); check logprobs/advantages/weights "
            "(no gradient was accumulated)",
            field="data",
        )


def run_pass(
    module: torch.nn.Module,
    chunks: Sequence[tuple[list[int], TrainBatch]],
    loss_fn: str,
    backward: bool,
    vocab_size: int | None = None,
    recompute_over: int | None = None,
) -> PassResult:
    """Forward every chunk of the request; with `backward`, add the loss gradient to `.grad`.

    The loss is a sum over tokens, so chunks (the request's rows, split by `build_batches`) add
    up to the one-batch result. Each chunk's backward runs before the next chunk's forward, so
    only one chunk's activations and logits are alive at a time. A non-finite loss (e.g. an
    importance ratio that overflows) is refused, and the gradients the request's earlier chunks
    added are taken back, so accumulated gradients are never poisoned by one bad request. A chunk
    whose logits (`vocab_size` wide) would pass `HEAD_PIECE_BYTES` runs its output layer in pieces; with
    `backward`, a chunk of more than `recompute_over` tokens recomputes its layers (`layers_recomputed`).
    """
    import torch

    trainable = [p for p in module.parameters() if p.requires_grad] if backward else []
    before = [None if p.grad is None else p.grad.clone() for p in trainable] if len(chunks) > 1 else None
    parts, losses = [], []
    try:
        for rows, batch in chunks:
            rows_in_chunk, positions = batch.input_ids.shape
            step = head_piece_positions(vocab_size, rows_in_chunk) if vocab_size else positions
            recompute = backward and _over(batch, recompute_over)
            if step < positions or (backward and _few_positions_train(loss_fn, batch)):
                with layers_recomputed(module, recompute):
                    lp, loss = _pass_split_at_head(module, batch, loss_fn, backward, step)
                parts.append((rows, batch, lp))
                losses.append(loss)
                continue
            with (
                torch.enable_grad() if backward else torch.inference_mode(),
                layers_recomputed(module, recompute),
            ):
                lp = target_logprobs(module, batch)
                loss = total_loss(loss_fn, lp, batch)
            _refuse_non_finite(loss_fn, float(loss.detach()))
            if backward:
                loss.backward()
            parts.append((rows, batch, lp.detach()))
            losses.append(loss.detach())
        loss_value = float(torch.stack(losses).sum())
        _refuse_non_finite(loss_fn, loss_value)
    except UserError:
        if before is not None:
            for param, grad in zip(trainable, before, strict=True):
                param.grad = grad
        raise
    outputs: dict[int, types.TensorData] = {}
    for rows, batch, lp in parts:
        outputs.update(datum_logprobs(rows, batch, lp))
    return PassResult(loss=loss_value, logprobs=[outputs[row] for row in sorted(outputs)])


def datum_logprobs(rows: list[int], batch: TrainBatch, lp: torch.Tensor) -> dict[int, types.TensorData]:
    """Each datum's logprobs cut out of a padded chunk's [B, L, K] values, by its row in the request."""
    lp_cpu = lp.detach().float().cpu().numpy()
    outputs: dict[int, types.TensorData] = {}
    for index, (row, shape) in enumerate(zip(rows, batch.target_shapes, strict=True)):
        values = lp_cpu[index, : shape[0], : (shape[1] if len(shape) == 2 else 1)].reshape(shape)
        outputs[row] = types.TensorData(data=values.reshape(-1).tolist(), dtype="float32", shape=list(shape))
    return outputs


@dataclass
class ScorePassResult:
    loss: float
    scores: list[float]  # one per datum, in request order
    metrics: dict[str, float]


def _scores_in_order(parts: list[tuple[list[int], torch.Tensor]]) -> torch.Tensor:
    """Scores in request order from the chunks' (rows, scores) parts (chunks hold rows sorted by length)."""
    import torch

    scores = torch.cat([scores for _, scores in parts])
    rows = torch.tensor([row for chunk_rows, _ in parts for row in chunk_rows], device=scores.device)
    return scores[torch.argsort(rows)]


def run_score_pass(
    module: torch.nn.Module,
    head: torch.nn.Parameter,
    chunks: Sequence[tuple[list[int], TrainBatch]],
    loss_fn: str,
    backward: bool,
    recompute_over: int | None = None,
) -> ScorePassResult:
    """Score every datum with the reward head, apply `loss_fn` (a ScoreLoss) and, with `backward`, its gradient.

    A score loss couples datums (a pair's two scores), so chunks do not add up on their own. One
    chunk runs forward and backward directly. Several chunks first score every datum without a
    graph, take the loss's gradient with respect to each score, then run each chunk again with
    its graph and back-propagate `Σ score * dL/dscore`: the same gradient, with one chunk's
    activations alive at a time (the price is one more forward). A chunk of more than `recompute_over`
    tokens recomputes its layers in backward (`layers_recomputed`).
    """
    import torch

    from server_stub.training.losses import LOSSES, ScoreLoss
    from server_stub.training.reward_head import reward_scores

    loss = LOSSES[loss_fn]
    assert isinstance(loss, ScoreLoss)
    config = chunks[0][1].config
    direct = backward and len(chunks) == 1
    recompute = direct and _over(chunks[0][1], recompute_over)
    with torch.enable_grad() if direct else torch.inference_mode(), layers_recomputed(module, recompute):
        scores = _scores_in_order([(rows, reward_scores(module, head, batch)) for rows, batch in chunks])
        value = loss.terms(scores, config)
    _refuse_non_finite(loss_fn, float(value.detach()))
    if direct:
        value.backward()
    elif backward:
        leaf = scores.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad_scores,) = torch.autograd.grad(loss.terms(leaf, config), leaf)
        for rows, batch in chunks:
            with torch.enable_grad(), layers_recomputed(module, _over(batch, recompute_over)):
                chunk_scores = reward_scores(module, head, batch)
                (chunk_scores * grad_scores[torch.tensor(rows, device=grad_scores.device)]).sum().backward()
    values = scores.detach().float().cpu()
    metrics = {"loss:sum": float(value.detach())}
    if loss.paired:
        metrics["pairs:sum"] = float(values.numel() // 2)
        metrics["correct_pairs:sum"] = float((values[0::2] > values[1::2]).sum())
    return ScorePassResult(loss=float(value.detach()), scores=values.tolist(), metrics=metrics)
