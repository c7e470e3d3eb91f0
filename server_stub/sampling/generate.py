"""Batched generation with a KV cache: one prefill per distinct prompt, then one decode step per token.

Distinct prompts are left-padded into one batch and prefilled once, however many requests share
them (an RL group sends its prompt once per rollout, so one prefill instead of one per request
makes a group's requests cost about what one request with that many samples costs); the cache
is then expanded to the `num_samples` rows of
each request, and every decode step advances all rows together (attention mask and per-row
position ids keep the padding invisible). Rows that finish keep decoding until enough of them have
finished to be worth dropping from the batch (cache rows included); their surplus tokens are cut
off at the end. The prompts' pass and prompt logprobs are `prefill.py`'s. Decode steps of the
Llama-family models go through `llama_decode`'s lean step, others through the Hugging Face module;
per-step bookkeeping is kept for the rows still decoding only.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from cookbook.client import types
from server_stub.compute_turns import decode_beside, offer_turn
from server_stub.intra_op_threads import intra_op_threads
from server_stub.models.token_bytes import TokenBytes
from server_stub.sampling.llama_decode import DecodePlan, decodes_in_place, plan_for, small_model_threads
from server_stub.sampling.prefill import PromptOutputs, prefill
from server_stub.sampling.stops import StopTracker
from server_stub.sampling.token_choice import RowSettings, choose_tokens

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

    from server_stub.engine import TokenSink
    from server_stub.sampling.requests import PreparedRequest

INITIAL_ROOM = 128  # KV positions reserved past the prompt at first; the cache doubles when it needs more
COMPACT_FRACTION = 0.75  # drop finished rows once at least a quarter of the batch is done ...
COMPACT_MIN_ROWS = 8  # ... and that is at least this many rows


def generate(
    module: torch.nn.Module,
    requests: list[PreparedRequest],
    token_bytes: TokenBytes,
    vocab_size: int,
    pad_id: int,
    max_tokens: int,
    reactivate: Callable[[], torch.nn.Module] | None = None,
) -> list[types.SampleResponse]:
    """Sample every request's `num_samples` continuations in one batch (call under inference mode);
    no piece of the prompts' pass holds more than `max_tokens` padded tokens (see `prefill`).

    Between decode steps other work may take a turn (`compute_turns`); `reactivate` then gives the
    module back with this batch's weights active again (training may have switched adapters). A
    lean decode lets other work run beside it instead, where the caller allows (`decode_beside`)."""
    import torch

    device = next(module.parameters()).device
    max_of_row = [req.max_tokens for req in requests for _ in range(req.num_samples)]
    steps = max(max_of_row)
    room = min(steps, INITIAL_ROOM) if steps > 1 else None  # one token per row needs no cache
    # A small model's prompts run on the lean decode's one thread too: two would give this thread a pool of
    # OpenMP workers beside the compute thread's, and libgomp then cuts every pool's spin to 100
    # iterations (bench/README.md, "OpenMP waits measured again").
    with intra_op_threads(small_model_threads(module)):
        pre = prefill(module, requests, pad_id, room, device, max_tokens)
    stops = StopTracker(requests, token_bytes, vocab_size, device)
    num_rows, width = pre.prompt_mask.shape
    tokens = torch.zeros((num_rows, steps), dtype=torch.int64, device=device)
    logprobs = torch.zeros((num_rows, steps), dtype=torch.float32, device=device)
    row_max = torch.tensor(max_of_row, device=device)
    length = row_max.clone()  # a row that never stops runs to its max_tokens
    stopped = torch.zeros(num_rows, dtype=torch.bool, device=device)
    # The decoding batch: which original rows it holds, and their settings, state, masks and positions.
    batch = _Batch(torch.arange(num_rows, device=device), row_max, everyone=True)
    settings = RowSettings.build(requests, vocab_size, device)
    attention = torch.cat([pre.prompt_mask, pre.prompt_mask.new_ones((num_rows, steps))], dim=1)
    next_position, logits = pre.next_position, pre.logits
    cache = pre.cache
    sinks = _token_sinks(requests)
    limit_steps = set(max_of_row)  # a row reaches its max_tokens only after one of these many steps
    lean = _LeanDecode.start(module, cache, attention if pre.padded else None, width + steps)
    threads = torch.get_num_threads()
    # The lean step reads only its plan's weights and this cache: other calls may run beside it.
    beside = decode_beside() if lean is not None else contextlib.nullcontext(False)
    with intra_op_threads(lean.plan.threads if lean is not None else None), beside as others_run_beside:
        turns = reactivate is not None and not others_run_beside
        for step in range(steps):
            new, new_lp = choose_tokens(logits, settings, step)
            if batch.everyone:
                tokens[:, step], logprobs[:, step] = new, new_lp
            else:
                tokens[batch.rows, step], logprobs[batch.rows, step] = new, new_lp
            if sinks:
                _tell_sinks(sinks, tokens[:, step].tolist(), batch.active_rows(num_rows).tolist())
            hit = stops.hits(new, tokens, step) & batch.active
            batch.length = torch.where(hit, step + 1, batch.length)
            batch.stopped |= hit
            batch.active ^= hit  # hit only holds active rows
            if step + 1 in limit_steps:
                batch.active &= batch.max_tokens > step + 1
            if step + 1 == steps:
                break
            assert cache is not None  # a prefill keeps its cache whenever some row decodes a second token
            kept = int(batch.active.sum())
            if kept == 0:
                break
            if kept <= COMPACT_FRACTION * batch.size and batch.size - kept >= COMPACT_MIN_ROWS:
                index = batch.active.nonzero().flatten()  # drop finished rows: they would only waste compute
                batch.record(length, stopped)
                batch, settings, new = batch.select(index), settings.select(index), new[index]
                attention, next_position = attention[index], next_position[index]
                stops.select(index)
                cache.reorder_cache(index)
                if lean is not None:
                    lean.select(index)
            # Training that takes the turn needs autograd and the process's own thread count.
            if turns and offer_turn(functools.partial(_training_turn, threads)):
                module = reactivate()
                if lean is not None:
                    lean = lean.refreshed(module)
            if lean is not None:
                logits = lean.step(new, next_position + step, cache, width + step + 1)
                continue
            out = module(
                input_ids=new.unsqueeze(-1),
                attention_mask=attention[:, : width + step + 1] if pre.padded else None,
                position_ids=(next_position + step).unsqueeze(-1),
                cache=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1, :].float()
    batch.record(length, stopped)
    return _responses(requests, pre.prompt_outputs, tokens, logprobs, length, stopped)


@contextlib.contextmanager
def _training_turn(threads: int) -> Iterator[None]:
    """What a training call that cuts in on decoding needs: autograd and the process's thread count."""
    import torch

    with torch.inference_mode(False), intra_op_threads(threads):
        yield


class _Batch:
    """The rows still decoding (original row numbers) and their state, kept for those rows only."""

    def __init__(self, rows: torch.Tensor, max_tokens: torch.Tensor, everyone: bool = False):
        import torch

        self.rows = rows
        self.everyone = everyone  # rows are all rows, in order: writes can use plain slices
        self.size = rows.numel()
        self.max_tokens = max_tokens
        self.active = torch.ones(self.size, dtype=torch.bool, device=rows.device)  # not stopped nor at max
        self.length = max_tokens.clone()
        self.stopped = torch.zeros(self.size, dtype=torch.bool, device=rows.device)

    def active_rows(self, num_rows: int) -> torch.Tensor:
        """[num_rows] bool: original rows still sampling."""
        import torch

        active = torch.zeros(num_rows, dtype=torch.bool, device=self.rows.device)
        active[self.rows] = self.active
        return active

    def record(self, length: torch.Tensor, stopped: torch.Tensor) -> None:
        """Write these rows' lengths and stop flags into the whole batch's."""
        length[self.rows], stopped[self.rows] = self.length, self.stopped

    def select(self, index: torch.Tensor) -> _Batch:
        kept = _Batch(self.rows[index], self.max_tokens[index])
        kept.active, kept.length, kept.stopped = self.active[index], self.length[index], self.stopped[index]
        return kept


class _LeanDecode:
    """Decode steps through `llama_decode` instead of the Hugging Face module, for the models it covers."""

    def __init__(self, plan: DecodePlan, padding: torch.Tensor | None, positions: int):
        self.plan = plan
        self.rotary = plan.rotary_table(positions)
        self.padding = padding  # [rows, 1, 1, positions] bool, True on padding; None when no row is padded

    @classmethod
    def start(
        cls,
        module: torch.nn.Module,
        cache: DynamicCache | None,
        attention: torch.Tensor | None,
        positions: int,
    ) -> _LeanDecode | None:
        plan = plan_for(module) if decodes_in_place(cache) else None
        if plan is None:
            return None
        return cls(plan, None if attention is None else (attention == 0)[:, None, None, :], positions)

    def select(self, rows: torch.Tensor) -> None:
        if self.padding is not None:
            self.padding = self.padding[rows]

    def refreshed(self, module: torch.nn.Module) -> _LeanDecode | None:
        """This decode with the module's weights as they are after another caller's turn."""
        plan = plan_for(module)
        if plan is None:
            return None
        self.plan = plan
        return self

    def step(
        self, new: torch.Tensor, position: torch.Tensor, cache: DynamicCache, filled: int
    ) -> torch.Tensor:
        """fp32 logits [R, V] after feeding `new` at `position`; `filled` positions are then cached."""
        padding = None if self.padding is None else self.padding[..., :filled]
        return self.plan.step(new, self.rotary[position], cache, padding)


def _token_sinks(requests: list[PreparedRequest]) -> list[tuple[TokenSink, int, int]]:
    """(sink, first row, rows) of every request that streams its tokens."""
    sinks, row = [], 0
    for req in requests:
        if req.on_token is not None:
            sinks.append((req.on_token, row, req.num_samples))
        row += req.num_samples
    return sinks


def _tell_sinks(sinks: list[tuple[TokenSink, int, int]], step_tokens: list[int], active: list[bool]) -> None:
    """Each streaming request's rows that were still sampling get this step's token."""
    for sink, first, count in sinks:
        for sample in range(count):
            if active[first + sample]:
                sink(sample, step_tokens[first + sample])


def _responses(
    requests: list[PreparedRequest],
    prompt_outputs: list[PromptOutputs],
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
