"""`RankEngine`: the engine each rank runs, a `TorchEngine` whose training spans the process group.

Every rank receives the same training calls in the same order, so its models, adapters and
optimizer steps stay in step; methods here add the collectives. A method never raises on one rank
before a collective the others enter: inputs are checked the same way everywhere first, and errors
found on one rank (a non-finite loss, a bad checkpoint on rank 0) are shared before anyone raises.
"""

from __future__ import annotations

import math
import random
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cookbook.client import types
from server_stub.distributed.data_parallel import lockstep_pass, rows_by_tokens, sum_replica_gradients
from server_stub.distributed.group import RankPlace
from server_stub.distributed.tensors import broadcast_tensors, shard_like
from server_stub.engine import SampleJob, UserError
from server_stub.storage.checkpoints import CheckpointMeta
from server_stub.torch_engine import SavedState, TorchEngine
from server_stub.training.batch import build_batches
from server_stub.training.trainable import TrainableModel, full_weight_model, whole_tensor
from server_stub.validation import check_adam_params, check_forward_backward_input, check_sampler_source


def _sample_tokens(job: SampleJob) -> int:
    """A request's work, roughly: its rows times prompt plus answer length (no limit: the prompt alone)."""
    request = job.request
    return request.num_samples * (request.prompt.length + (request.sampling_params.max_tokens or 0)) + 1


def _portable(result: types.SampleResponse | Exception) -> Any:
    """A sample result as it crosses ranks: a UserError keeps its class and field, others become text."""
    if isinstance(result, UserError):
        return (type(result), result.message, result.field)
    if isinstance(result, Exception):
        return (RuntimeError, f"{type(result).__name__}: {result}", None)
    return result


def _unpacked(shipped: Any) -> types.SampleResponse | Exception:
    if not isinstance(shipped, tuple):
        return shipped
    kind, message, field = shipped
    return kind(message, field=field) if issubclass(kind, UserError) else kind(message)


class PeerRefused(UserError):
    """Rank 0 refused the call (its error is the one the caller sees); the other ranks raise this."""


def _shard_module(module: Any, place: RankPlace) -> None:
    """FSDP2: each decoder layer its own unit (gathered one at a time), the rest (embeddings, tied output) the root."""
    from torch.distributed.fsdp import fully_shard

    for layer in module.model.layers:
        fully_shard(layer, mesh=place.mesh)
    fully_shard(module, mesh=place.mesh)


def _shard_entry(key: str, whole: Any, model: TrainableModel) -> Any:
    """An optimizer state entry (`kind/param_name`) cut like its parameter (unknown names: AdamW refuses them)."""
    param = model.params.get(key.partition("/")[2])
    return whole if param is None else shard_like(whole, param)


class RankEngine(TorchEngine):
    def __init__(self, storage_dir: Path, place: RankPlace, **engine_options: Any):
        import torch.distributed as dist

        super().__init__(storage_dir, device=str(place.device), **engine_options)
        self.place = place
        seed: list[Any] = [secrets.randbits(128)]
        # sampler ids: every rank draws the same random ids from rank 0's secret seed, in step
        dist.broadcast_object_list(seed, src=0)
        self._sampler_ids = random.Random(seed[0])

    # -- models ------------------------------------------------------------------------------

    def create_model(
        self,
        model_id: str,
        base_model: str,
        lora_config: types.LoraConfig | None,
        user_metadata: dict[str, Any] | None,
    ) -> types.CreateModelResponse:
        response = super().create_model(model_id, base_model, lora_config, user_metadata)
        model = self._models[model_id]
        if not model.is_lora:  # replaces the module's parameters with shards: rebuild what keys on them
            module = model.module()
            _shard_module(module, self.place)
            self._models[model_id] = full_weight_model(model_id, base_model, module)
        return response

    # -- training ----------------------------------------------------------------------------

    def forward_backward(
        self, model_id: str, fwd: types.ForwardBackwardInput, backward: bool
    ) -> types.ForwardBackwardOutput:
        import torch
        import torch.distributed as dist

        model = self._model(model_id)
        limits = self.model_limits(model.base_model)
        check_forward_backward_input(fwd, limits)  # the same verdict on every rank
        lengths = [d.model_input.length for d in fwd.data]
        rows = rows_by_tokens(lengths, self.place.world)[self.place.rank]
        share = fwd.model_copy(update={"data": [fwd.data[i] for i in rows]})
        local = (
            build_batches(share, limits, self.device, *self.pass_sizes(model, backward)) if rows else []
        )  # a rank with no rows (fewer datums than ranks) only joins the collectives
        chunks = [([rows[i] for i in chunk_rows], batch) for chunk_rows, batch in local]
        passes = torch.tensor([len(chunks)], device=self.device)
        if not model.is_lora:  # sharded: every rank runs as many passes as the busiest
            dist.all_reduce(passes, op=dist.ReduceOp.MAX)
        params = list(model.params.values())
        before = [None if p.grad is None else p.grad.clone() for p in params] if backward else []
        # FSDP2 averages the ranks' gradients (gloo has no pre-scaled sum); losses are sums, so scale up.
        scale = 1.0 if model.is_lora else float(self.place.world)
        result = lockstep_pass(model.module(), chunks, fwd.loss_fn, backward, int(passes.item()), scale)
        shares: list[Any] = [None] * self.place.world
        dist.all_gather_object(shares, result)
        refusals = [s.refusal for s in shares if s.refusal is not None]
        total = math.fsum(s.loss for s in shares)
        if refusals or not math.isfinite(total):
            for param, grad in zip(params, before, strict=True):
                param.grad = grad
            reason = refusals[0] if refusals else f"the {fwd.loss_fn} loss is not finite ({total})"
            raise UserError(
                f"{reason}; check logprobs/advantages/weights (no gradient was accumulated)", field="data"
            )
        logprobs = {row: lp for s in shares for row, lp in s.logprobs.items()}
        self._touch(model_id)
        return types.ForwardBackwardOutput(
            loss_fn_output_type="ArrayRecord",
            loss_fn_outputs=[{"logprobs": logprobs[row]} for row in range(len(fwd.data))],
            metrics={"loss:sum": total},
        )

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        model = self._model(model_id)
        check_adam_params(adam)  # before the gradients are summed, so a refused step sums nothing
        if model.is_lora:
            sum_replica_gradients(model.params, self.device)
        return super().optim_step(model_id, adam)

    # -- checkpoints -------------------------------------------------------------------------

    def _save(
        self, model: TrainableModel, meta: CheckpointMeta, with_optimizer: bool, overwrite: bool
    ) -> str:
        weights = model.snapshot()
        optimizer_state = (
            {key: whole_tensor(t) for key, t in model.optimizer.state_tensors().items()}
            if with_optimizer
            else None
        )
        if self.place.rank != 0:
            return ""
        return self._write_checkpoint(model, meta, weights, optimizer_state, overwrite)

    def _rank0_reads(
        self, read: Callable[[], tuple[Any, dict[str, dict[str, Any]]]]
    ) -> tuple[Any, dict[str, dict[str, Any]]]:
        """Rank 0 runs `read` (only it sees the storage): its small result and its tensor dicts on every
        rank. A UserError there is raised on every rank, as the same error, before anything changes."""
        import torch.distributed as dist

        header: list[Any] = [None]
        refusal: UserError | None = None
        tensors: dict[str, dict[str, Any]] = {}
        if self.place.rank == 0:
            try:
                info, tensors = read()
                header[0] = ("ok", info, list(tensors))
            except UserError as exc:
                refusal, header[0] = exc, ("refused", exc.message, exc.field)
        dist.broadcast_object_list(header, src=0)
        if refusal is not None:
            raise refusal
        status, info, names = header[0]
        if status == "refused":
            raise PeerRefused(info, field=names)
        return info, {name: broadcast_tensors(tensors.get(name), self.device) for name in names}

    def load_state(self, model_id: str, tinker_path: str, optimizer: bool) -> types.LoadWeightsResponse:
        model = self._model(model_id)

        def read() -> tuple[Any, dict[str, dict[str, Any]]]:
            state = self._read_state(model, tinker_path, optimizer)
            groups = {"weights": state.weights, **({"optimizer": state.optimizer} if state.optimizer else {})}
            return state.optimizer_step, groups

        step, groups = self._rank0_reads(read)
        optimizer_state = groups.get("optimizer")
        sharded = SavedState(
            {name: shard_like(t, model.params[name]) for name, t in groups["weights"].items()},
            None
            if optimizer_state is None
            else {key: _shard_entry(key, t, model) for key, t in optimizer_state.items()},
            step,
        )
        self._apply_state(model, tinker_path, sharded)
        return types.LoadWeightsResponse(path=tinker_path, model_id=model_id, type="load_weights")

    # -- samplers: every rank holds every sampler; a batch of requests is split across ranks ----

    def _next_sampler_id(self) -> str:
        return (
            f"sampler-{uuid.UUID(int=self._sampler_ids.getrandbits(128), version=4).hex}"  # 122 random bits
        )

    def create_sampler(self, base_model: str | None, model_path: str | None) -> types.GetSamplerResponse:
        check_sampler_source(base_model, model_path)
        if model_path is None:
            return super().create_sampler(base_model, None)

        def read() -> tuple[Any, dict[str, dict[str, Any]]]:
            meta, tensors = self._read_sampler_weights(base_model, model_path)
            return (meta.base_model, meta.lora), {"weights": tensors}

        (checkpoint_base, lora), groups = self._rank0_reads(read)
        return self._register_sampler(checkpoint_base, lora, groups["weights"], model_path)

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        """This rank's share of the requests (balanced by tokens), everyone's results gathered on rank 0.

        Seeded draws depend only on the request's own seed, so which rank runs it changes nothing."""
        import torch.distributed as dist

        sizes = [_sample_tokens(job) for job in jobs]
        mine = rows_by_tokens(sizes, self.place.world)[self.place.rank]
        results = super().sample([jobs[i] for i in mine]) if mine else []
        shipped = [(i, _portable(r)) for i, r in zip(mine, results, strict=True)]
        gathered: list[Any] | None = [None] * self.place.world if self.place.rank == 0 else None
        dist.gather_object(shipped, gathered, dst=0)
        if gathered is None:
            return []
        by_job = {i: result for share in gathered for i, result in share}
        return [_unpacked(by_job[i]) for i in range(len(jobs))]
