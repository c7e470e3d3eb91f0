"""`TorchEngine`: the `Engine` protocol on PyTorch + transformers + peft.

This module wires the pieces together and owns the engine's state (live training models,
samplers, snapshots); the computation lives in `training/`, `sampling/`, `models/` and
`storage/`. Heavy methods run one at a time (the scheduler's sampling and compute threads hand
the engine to each other), so they take no locks, except that a lean decoding loop, which reads
only its own weight copies and cache, lets other calls run beside it; the cheap metadata methods
only read dicts and files and are safe from any thread.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cookbook.client import types
from server_stub.activation_budget import (
    MIB,
    cache_bytes_per_token,
    tokens_within,
    training_bytes_per_token,
)
from server_stub.config import ServerConfig
from server_stub.device import resolve_device, resolve_dtype
from server_stub.engine import ConflictError, ModelLimits, NotFoundError, SampleJob, UserError
from server_stub.exports import ExportInputs, write_export
from server_stub.memory_release import release_free_memory
from server_stub.models.lora_hub import LoraSpec
from server_stub.models.registry import LoadedBase, ModelRegistry
from server_stub.sampling.batches import cache_tokens, sampling_batches
from server_stub.sampling.generate import generate
from server_stub.sampling.modules import SamplingModules
from server_stub.sampling.requests import PreparedRequest, prepare_request
from server_stub.sampling.snapshots import SnapshotStore, remove_dead_spill_dirs
from server_stub.storage.archive import write_tar
from server_stub.storage.checkpoints import CheckpointMeta, CheckpointStore
from server_stub.storage.paths import StorageLayout
from server_stub.storage.runs import RunMeta, RunStore, stringify_metadata
from server_stub.storage.weight_files import (
    read_optimizer,
    read_reward_head,
    read_weights,
    write_optimizer,
    write_reward_head,
    write_weights,
)
from server_stub.training.batch import TrainBatch, build_batches
from server_stub.training.forward_backward import run_pass, run_score_pass
from server_stub.training.losses import LOSSES, ScoreLoss
from server_stub.training.reward_head import REWARD_HEAD_WEIGHT
from server_stub.training.shared_prefix import supports_shared_prefix
from server_stub.training.trainable import TrainableModel, full_weight_model, lora_model
from server_stub.validation import (
    check_adam_params,
    check_lora_config,
    check_reward_loss_call,
    check_safe_name,
    check_sampler_source,
    check_ttl,
)

logger = logging.getLogger(__name__)

MAX_LORA_RANK = 1024
MAX_ROWS_PER_BATCH = 512  # sampling rows decoded together; more are run in further batches
DEFAULT_LORA_SEED = 0


@dataclass(frozen=True)
class SamplerRecord:
    sampler_id: str
    base_model: str
    snapshot_id: str | None  # None: the plain base model
    model_path: str | None


@dataclass(frozen=True)
class SavedState:
    """A checkpoint's whole tensors as read from its folder."""

    weights: dict[str, Any]
    optimizer: dict[str, Any] | None  # None: start the optimizer afresh
    optimizer_step: int


def _lora_spec(config: types.LoraConfig | None) -> LoraSpec | None:
    """None for full-weight training (no config or rank 0); else the validated LoRA shape."""
    check_lora_config(config)
    if config is None or config.rank == 0:
        return None
    if config.rank > MAX_LORA_RANK:
        raise UserError(
            f"lora_config.rank: at most {MAX_LORA_RANK} is supported, got {config.rank}",
            field="lora_config.rank",
        )
    return LoraSpec(
        rank=config.rank,
        train_attn=config.train_attn,
        train_mlp=config.train_mlp,
        train_unembed=config.train_unembed,
    )


def _describe(spec: LoraSpec | None) -> str:
    if spec is None:
        return "full weights"
    parts = [
        name
        for name, on in (("attn", spec.train_attn), ("mlp", spec.train_mlp), ("unembed", spec.train_unembed))
        if on
    ]
    return f"LoRA rank {spec.rank} on {'+'.join(parts)}"


RELEASE_AFTER_BYTES = 256 * MIB
"""A training pass whose largest piece's activations (or a sampling batch whose KV cache) reach this gives
the heaps' free memory back after it (glibc keeps it otherwise); smaller passes skip the cost."""

CPU_PASS_TOKEN_BUDGET = 1536
"""Padded tokens per chunk of a training pass on a CPU: the best of 512-4096 in bench/bench_chunked_pass.py."""


class TorchEngine:
    """Models, training, sampling and checkpoints on one device."""

    def __init__(
        self,
        storage_dir: Path,
        device: str = "auto",
        dtype: str = "auto",
        extra_models: dict[str, str] | None = None,
        max_pass_tokens: int = ServerConfig.max_pass_tokens,
        activation_budget_mib: int = ServerConfig.activation_budget_mib,
    ):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # Training passes on a CPU run in length-sorted chunks of at most this many padded tokens
        # (faster there); an accelerator gets each request as one batch.
        self.pass_token_budget = CPU_PASS_TOKEN_BUDGET if self.device.type == "cpu" else None
        self.max_pass_tokens = max_pass_tokens  # memory: no piece of any pass is larger, on any device
        self.share_prefixes = True  # rows that begin alike run that prefix once, where the model allows it
        # memory: a training piece's activations and a sampling batch's KV cache stay within this
        self.activation_budget_mib = activation_budget_mib
        self.registry = ModelRegistry(self.device, self.dtype, extra_models)
        self.layout = StorageLayout(Path(storage_dir))
        self.checkpoints = CheckpointStore(self.layout)
        self.runs = RunStore(self.layout, self.checkpoints)
        self.sweep_storage()  # what a killed predecessor left: temp dirs of saves, spill files, expired
        remove_dead_spill_dirs(self.layout.spill_root())
        self.snapshots = SnapshotStore(self.layout.spill_root(), self.device)
        self.sampling_modules = SamplingModules(self.registry, self.snapshots)
        self._models: dict[str, TrainableModel] = {}
        self._run_meta: dict[str, RunMeta] = {}
        self._samplers: dict[str, SamplerRecord] = {}
        self._adapter_ids = itertools.count()

    # -- cheap metadata ----------------------------------------------------------------------

    def supported_models(self) -> list[types.SupportedModel]:
        return [
            types.SupportedModel(
                model_name=name, max_context_length=self.registry.source(name).limits.max_context_length
            )
            for name in self.registry.names()
        ]

    def model_limits(self, base_model: str) -> ModelLimits:
        return self.registry.source(base_model).limits

    def tokenizer(self, base_model: str) -> types.TokenizerResponse:
        files = self.registry.tokenizer(base_model)
        return types.TokenizerResponse(
            model_name=base_model,
            tokenizer_json=files.tokenizer_json,
            bos_token=files.bos_token,
            eos_token=files.eos_token,
            pad_token=files.pad_token,
            chat_template=files.chat_template,
        )

    def _model(self, model_id: str) -> TrainableModel:
        model = self._models.get(model_id)
        if model is None:
            raise NotFoundError(f"unknown model {model_id!r}", field="model_id")
        return model

    def _sampler(self, sampler_id: str) -> SamplerRecord:
        record = self._samplers.get(sampler_id)
        if record is None:
            raise NotFoundError(f"unknown sampler {sampler_id!r}", field="sampling_session_id")
        return record

    def base_model_of(self, model_id: str) -> str:
        return self._model(model_id).base_model

    def sampler_base_model(self, sampler_id: str) -> str:
        return self._sampler(sampler_id).base_model

    def get_info(self, model_id: str) -> types.GetInfoResponse:
        model = self._model(model_id)
        source = self.registry.source(model.base_model)
        files = self.registry.tokenizer(model.base_model)
        chat_format = types.ChatFormat(
            chat_template=files.chat_template,
            bos_token=files.bos_token,
            eos_token=files.eos_token,
            pad_token=files.pad_token,
        )
        return types.GetInfoResponse(
            type="get_info",
            model_id=model_id,
            model_name=model.base_model,
            is_lora=model.is_lora,
            lora_rank=model.lora.rank if model.lora else None,
            reward_head=True if model.reward_head is not None else None,
            model_data=types.ModelData(
                arch=source.arch,
                model_name=model.base_model,
                tokenizer_id=model.base_model,
                chat_format=chat_format,
            ),
        )

    def get_sampler(self, sampler_id: str) -> types.GetSamplerResponse:
        record = self._sampler(sampler_id)
        return types.GetSamplerResponse(
            sampler_id=sampler_id, base_model=record.base_model, model_path=record.model_path
        )

    def weights_info(self, tinker_path: str) -> types.WeightsInfoResponse:
        meta, _ = self.checkpoints.get(tinker_path, field="tinker_path")
        return meta.weights_info()

    def _run(self, run_id: str) -> RunMeta:
        live = self._run_meta.get(run_id)
        return live if live is not None else self.runs.read(run_id)

    def training_run(self, run_id: str) -> types.TrainingRun:
        return self.runs.to_wire(self._run(run_id))

    def list_checkpoints(self, run_id: str) -> types.CheckpointsListResponse:
        self._run(run_id)  # NotFoundError for an unknown run
        return types.CheckpointsListResponse(checkpoints=[m.to_wire() for m in self.checkpoints.list(run_id)])

    # -- models ------------------------------------------------------------------------------

    def create_model(
        self,
        model_id: str,
        base_model: str,
        lora_config: types.LoraConfig | None,
        user_metadata: dict[str, Any] | None,
        reward_head: bool = False,
    ) -> types.CreateModelResponse:
        check_safe_name(model_id, "model_id")
        if model_id in self._models:
            raise ConflictError(f"model {model_id!r} already exists", field="model_id")
        self.registry.source(base_model)
        spec = _lora_spec(lora_config)
        if self.runs.exists(model_id):  # checked before building; `runs.create` checks again
            raise ConflictError(f"training run {model_id!r} already exists in storage", field="model_id")
        if spec is None:
            model = full_weight_model(model_id, base_model, self.registry.fresh_model(base_model))
        else:
            seed = DEFAULT_LORA_SEED if lora_config is None or lora_config.seed is None else lora_config.seed
            hub = self.registry.get(base_model).hub
            model = lora_model(model_id, base_model, hub, f"train{next(self._adapter_ids)}", spec, seed)
        if reward_head:
            model.add_reward_head()
        now = time.time()
        meta = RunMeta(
            run_id=model_id,
            base_model=base_model,
            lora=spec,
            lora_seed=model.lora_seed,
            created_at=now,
            last_request_time=now,
            user_metadata=stringify_metadata(user_metadata),
            reward_head=reward_head,
        )
        try:
            self.runs.create(meta)
        except Exception:
            model.release()
            raise
        self._models[model_id] = model
        self._run_meta[model_id] = meta
        return types.CreateModelResponse(model_id=model_id)

    def unload_model(self, model_id: str) -> types.UnloadModelResponse:
        model = self._model(model_id)
        model.release()
        del self._models[model_id]
        meta = self._run_meta.pop(model_id)
        self.runs.write(meta)
        release_free_memory()  # its weights, optimizer state and gradients: rare, and worth handing back
        return types.UnloadModelResponse(model_id=model_id, type="unload_model")

    def _touch(self, model_id: str) -> None:
        self._run_meta[model_id].last_request_time = time.time()

    # -- training ----------------------------------------------------------------------------

    def forward_backward(
        self, model_id: str, fwd: types.ForwardBackwardInput, backward: bool
    ) -> types.ForwardBackwardOutput:
        model = self._model(model_id)
        check_reward_loss_call(fwd.loss_fn, backward, model.reward_head is not None, model_id, "loss_fn")
        chunks = build_batches(
            fwd,
            self.model_limits(model.base_model),
            self.device,
            *self.pass_sizes(model, backward),
            share_prefixes=self.share_prefixes and supports_shared_prefix(model.module()),
        )
        try:
            return self._forward_backward(model, fwd, backward, chunks)
        finally:
            if backward and self._activation_bytes(model, chunks) >= RELEASE_AFTER_BYTES:
                release_free_memory()

    def pass_sizes(self, model: TrainableModel, backward: bool) -> tuple[int | None, int]:
        """`build_batches`' token budget per length-sorted chunk and most padded tokens per piece for a
        pass on `model`: `max_pass_tokens`, and for a training pass at most what keeps its activations
        within `activation_budget_mib` (chunks then aim at that size too, so pieces stay even)."""
        max_tokens = (
            min(self.max_pass_tokens, self.activation_cap(model)) if backward else self.max_pass_tokens
        )
        budget = None if self.pass_token_budget is None else min(self.pass_token_budget, max_tokens)
        return budget, max_tokens

    def activation_cap(self, model: TrainableModel) -> int:
        """Tokens of a training piece on `model` whose activations fit `activation_budget_mib`."""
        return tokens_within(self.activation_budget_mib, self._bytes_per_token(model))

    def _bytes_per_token(self, model: TrainableModel) -> int:
        return training_bytes_per_token(model.module().config, self.dtype.itemsize)

    def _activation_bytes(self, model: TrainableModel, chunks: list[tuple[list[int], TrainBatch]]) -> int:
        """Estimated activation bytes of the pass's largest piece."""
        tokens = max((batch.input_ids.numel() for _, batch in chunks), default=0)
        return tokens * self._bytes_per_token(model)

    def _forward_backward(
        self,
        model: TrainableModel,
        fwd: types.ForwardBackwardInput,
        backward: bool,
        chunks: list[tuple[list[int], TrainBatch]],
    ) -> types.ForwardBackwardOutput:
        model_id = model.model_id
        recompute_over = self.activation_cap(model) if backward else None  # a single row over the budget
        if isinstance(LOSSES[fwd.loss_fn], ScoreLoss):
            assert model.reward_head is not None  # check_reward_loss_call refused a head-less model
            scored = run_score_pass(
                model.module(), model.reward_head, chunks, fwd.loss_fn, backward, recompute_over
            )
            self._touch(model_id)
            return types.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord",
                loss_fn_outputs=[
                    {types.REWARD_SCORE_OUTPUT: types.TensorData(data=[score], dtype="float32", shape=[1])}
                    for score in scored.scores
                ],
                metrics=scored.metrics,
            )
        vocab_size = self.model_limits(model.base_model).vocab_size
        result = run_pass(model.module(), chunks, fwd.loss_fn, backward, vocab_size, recompute_over)
        self._touch(model_id)
        return types.ForwardBackwardOutput(
            loss_fn_output_type="ArrayRecord",
            loss_fn_outputs=[{"logprobs": lp} for lp in result.logprobs],
            metrics={"loss:sum": result.loss},
        )

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        model = self._model(model_id)
        check_adam_params(adam)
        metrics = model.optimizer.step(adam)
        self._touch(model_id)
        return types.OptimStepResponse(metrics=metrics)

    # -- checkpoints -------------------------------------------------------------------------

    def _checkpoint_meta(
        self, model: TrainableModel, kind_dir: str, name: str, ttl_seconds: int | None
    ) -> CheckpointMeta:
        check_safe_name(name, "path")
        check_ttl(ttl_seconds)
        return CheckpointMeta(
            run_id=model.model_id,
            kind_dir=kind_dir,
            name=name,
            base_model=model.base_model,
            lora=model.lora,
            created_at=time.time(),
            ttl_seconds=ttl_seconds,
            reward_head=model.reward_head is not None,
        )

    def _save(
        self, model: TrainableModel, meta: CheckpointMeta, with_optimizer: bool, overwrite: bool
    ) -> str:
        optimizer_state = model.optimizer.state_tensors() if with_optimizer else None
        return self._write_checkpoint(model, meta, dict(model.params), optimizer_state, overwrite)

    def _write_checkpoint(
        self,
        model: TrainableModel,
        meta: CheckpointMeta,
        weights: dict[str, Any],
        optimizer_state: dict[str, Any] | None,
        overwrite: bool,
    ) -> str:
        """Write whole (unsharded) tensors as one checkpoint folder; returns its tinker path."""

        def write(directory: Path) -> None:
            write_weights(
                directory,
                {name: w for name, w in weights.items() if name != REWARD_HEAD_WEIGHT},
                model.lora,
                model.base_model,
                model.module().config.to_json_string(),
                self.registry.tokenizer(model.base_model),
            )
            if REWARD_HEAD_WEIGHT in weights:  # its own file: the PEFT adapter files stay standard
                write_reward_head(directory, {REWARD_HEAD_WEIGHT: weights[REWARD_HEAD_WEIGHT]})
            if optimizer_state is not None:
                write_optimizer(directory, optimizer_state)

        self.checkpoints.sweep_expired(model.model_id)
        saved = self.checkpoints.save(meta, write, overwrite=overwrite)
        self._touch(model.model_id)
        self.runs.write(self._run_meta[model.model_id])
        return saved.tinker_path

    def save_state(
        self, model_id: str, name: str, overwrite: bool, ttl_seconds: int | None
    ) -> types.SaveWeightsResponse:
        model = self._model(model_id)
        meta = replace(
            self._checkpoint_meta(model, "weights", name, ttl_seconds),
            optimizer_step=model.optimizer.step_count,
            has_optimizer=True,
        )
        return types.SaveWeightsResponse(path=self._save(model, meta, True, overwrite), type="save_weights")

    def load_state(self, model_id: str, tinker_path: str, optimizer: bool) -> types.LoadWeightsResponse:
        model = self._model(model_id)
        state = self._read_state(model, tinker_path, optimizer)
        self._apply_state(model, tinker_path, state)
        return types.LoadWeightsResponse(path=tinker_path, model_id=model_id, type="load_weights")

    def _read_state(self, model: TrainableModel, tinker_path: str, optimizer: bool) -> SavedState:
        """A checkpoint's tensors, after checking it fits `model` (UserError otherwise)."""
        meta, directory = self.checkpoints.get(tinker_path)
        if meta.base_model != model.base_model:
            raise UserError(
                f"{tinker_path} was trained on base model {meta.base_model!r}, this model is on "
                f"{model.base_model!r}",
                field="path",
            )
        if meta.lora != model.lora:
            raise UserError(
                f"{tinker_path} holds {_describe(meta.lora)}, this model is {_describe(model.lora)}",
                field="path",
            )
        if meta.reward_head and model.reward_head is None:
            raise UserError(
                f"{tinker_path} holds a reward model (its head included); this model has no reward head: "
                "create it with reward_head=true",
                field="path",
            )
        if optimizer and not meta.has_optimizer:
            raise UserError(
                f"{tinker_path} has no optimizer state (use a tinker://.../weights/... checkpoint)",
                field="path",
            )
        weights = read_weights(directory, meta.is_lora, self.device)
        if meta.reward_head:
            weights.update(read_reward_head(directory, self.device))
        model.check_compatible(weights, tinker_path)
        optimizer_state = read_optimizer(directory, self.device) if optimizer else None
        return SavedState(weights, optimizer_state, meta.optimizer_step or 0)

    def _apply_state(self, model: TrainableModel, tinker_path: str, state: SavedState) -> None:
        if state.optimizer is not None:  # restored before the weights: it validates everything first
            model.optimizer.load_state_tensors(state.optimizer, state.optimizer_step)
        else:
            model.optimizer.reset()
        model.load_weights(state.weights, tinker_path)
        model.optimizer.zero_grad()
        self._touch(model.model_id)

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        self.checkpoints.delete(run_id, checkpoint_id)

    def sweep_storage(self) -> None:
        self.checkpoints.sweep_leftovers()
        self.checkpoints.sweep_all_expired()

    def export_archive(self, tinker_path: str, fmt: str) -> Path:
        meta, directory = self.checkpoints.get(tinker_path)
        inputs = ExportInputs(
            tinker_path=tinker_path,
            meta=meta,
            checkpoint_dir=directory,
            base=self.registry.source(meta.base_model),
            tokenizer=self.registry.tokenizer(meta.base_model),
        )
        root = self.layout.exports_root()
        root.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=root))
        try:
            (work / "export").mkdir()
            write_export(fmt, inputs, work / "export")
            write_tar(work / "export", work / "export.tar")
            archive = root / f"{work.name}.tar"
            (work / "export.tar").rename(archive)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return archive

    # -- samplers ----------------------------------------------------------------------------

    def _new_sampler(self, base_model: str, snapshot_id: str | None, model_path: str | None) -> SamplerRecord:
        record = SamplerRecord(
            sampler_id=self._next_sampler_id(),
            base_model=base_model,
            snapshot_id=snapshot_id,
            model_path=model_path,
        )
        self._samplers[record.sampler_id] = record
        return record

    def _next_sampler_id(self) -> str:
        return f"sampler-{uuid.uuid4().hex}"  # 122 random bits: not guessable by another tenant

    def save_sampler_weights(
        self, model_id: str, name: str | None, ttl_seconds: int | None
    ) -> types.SaveWeightsForSamplerResponseInternal:
        model = self._model(model_id)
        if name is None:
            snapshot_id = self.snapshots.add(model.base_model, model.lora, model.snapshot())
            record = self._new_sampler(model.base_model, snapshot_id, None)
            self._touch(model_id)
            return types.SaveWeightsForSamplerResponseInternal(
                sampling_session_id=record.sampler_id, type="save_weights_for_sampler"
            )
        meta = self._checkpoint_meta(model, "sampler_weights", name, ttl_seconds)
        return types.SaveWeightsForSamplerResponseInternal(
            path=self._save(model, meta, False, overwrite=False), type="save_weights_for_sampler"
        )

    def release_sampler(self, sampler_id: str) -> None:
        record = self._samplers.pop(sampler_id, None)
        if record is not None and record.snapshot_id is not None:
            self.snapshots.discard(record.snapshot_id)

    def create_sampler(self, base_model: str | None, model_path: str | None) -> types.GetSamplerResponse:
        check_sampler_source(base_model, model_path)
        if model_path is None:
            assert base_model is not None  # check_sampler_source refuses neither
            self.registry.get(base_model)
            return self.get_sampler(self._new_sampler(base_model, None, None).sampler_id)
        meta, tensors = self._read_sampler_weights(base_model, model_path)
        return self._register_sampler(meta.base_model, meta.lora, tensors, model_path)

    def _read_sampler_weights(
        self, base_model: str | None, model_path: str
    ) -> tuple[CheckpointMeta, dict[str, Any]]:
        meta, directory = self.checkpoints.get(model_path, field="model_path")
        if base_model is not None and base_model != meta.base_model:
            raise UserError(
                f"{model_path} is for base model {meta.base_model!r}, not {base_model!r}", field="base_model"
            )
        return meta, read_weights(directory, meta.is_lora, self.device)

    def _register_sampler(
        self, base_model: str, lora: LoraSpec | None, tensors: dict[str, Any], model_path: str
    ) -> types.GetSamplerResponse:
        """A sampler on a checkpoint's weights (UserError, and nothing kept, if they do not fit the base)."""
        base = self.registry.get(base_model)
        snapshot_id = self.snapshots.add(base_model, lora, tensors)
        try:
            self.sampling_modules.check(base, self.snapshots.get(snapshot_id), tensors, model_path)
        except UserError:
            self.snapshots.discard(snapshot_id)
            raise
        return self.get_sampler(self._new_sampler(base_model, snapshot_id, model_path).sampler_id)

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        results: list[types.SampleResponse | Exception | None] = [None] * len(jobs)
        groups: dict[str, list[tuple[int, PreparedRequest]]] = {}
        for index, job in enumerate(jobs):
            try:
                record = self._sampler(job.sampler_id)
                base = self.registry.get(record.base_model)
                prepared = prepare_request(job.request, base.source.limits, base.eos_ids, job.on_token)
            except UserError as exc:
                results[index] = exc
                continue
            groups.setdefault(job.sampler_id, []).append((index, prepared))
        for sampler_id, members in groups.items():
            record = self._samplers[sampler_id]
            try:
                self._sample_group(self.registry.get(record.base_model), record, members, results)
            except Exception as exc:  # a failure of the batch fails its jobs, never the others
                logger.exception("sampling batch for %s failed", sampler_id)
                for index, _ in members:
                    if results[index] is None:
                        results[index] = exc
        return [r if r is not None else RuntimeError("sample job produced no result") for r in results]

    def _sample_group(
        self,
        base: LoadedBase,
        record: SamplerRecord,
        members: list[tuple[int, PreparedRequest]],
        results: list[types.SampleResponse | Exception | None],
    ) -> None:
        import torch

        module = self.sampling_modules.module_for(base, record.snapshot_id)
        pad_id = base.eos_ids[0] if base.eos_ids else 0
        cache_bytes = cache_bytes_per_token(module.config, self.dtype.itemsize)
        requests = [request for _, request in members]
        batches = sampling_batches(
            requests, MAX_ROWS_PER_BATCH, tokens_within(self.activation_budget_mib, cache_bytes)
        )
        for batch in batches:
            with torch.inference_mode():
                responses = generate(
                    module,
                    [requests[i] for i in batch],
                    base.token_bytes,
                    base.source.limits.vocab_size,
                    pad_id,
                    self.max_pass_tokens,
                    reactivate=lambda: self.sampling_modules.module_for(base, record.snapshot_id),
                )
            for i, response in zip(batch, responses, strict=True):
                results[members[i][0]] = response
        if (
            max(cache_tokens([requests[i] for i in batch]) for batch in batches) * cache_bytes
            >= RELEASE_AFTER_BYTES
        ):
            release_free_memory()
