"""A small deterministic Engine for testing the web layer on its side of the engine boundary.

Each training model is one scalar weight `w`. forward_backward reports `w` as every logprob (so a
test can tell which optimizer steps a call saw) and accumulates a gradient equal to the number of
target tokens; optim_step does `w -= lr * grad`. Samplers are snapshots of `w`. Every heavy call is
recorded in `calls` (in the order the compute thread ran it) and can be held at a gate so tests
can fill the queues while the compute thread is busy. The real engine is tested through the
same routes in test_web_real_engine.py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cookbook.client import types
from server_stub.engine import ConflictError, ModelLimits, NotFoundError, SampleJob, UserError

BASE_MODEL = "fake-base"
VOCAB = 64
CONTEXT = 32
POISON_TOKEN = 13  # a sample prompt starting with this fails in its own slot
EXPLODE_TOKEN = 14  # a forward_backward whose first datum starts with this raises a server error
REFUSE_TOKEN = 15  # ... and this one raises a UserError at execution time


@dataclass
class _Model:
    base_model: str
    lora_rank: int
    w: float = 0.0
    grad: float = 0.0
    step: int = 0


@dataclass
class FakeEngine:
    calls: list[tuple[str, str | None, Any]] = field(default_factory=list)
    models: dict[str, _Model] = field(default_factory=dict)
    samplers: dict[str, tuple[str, float, str | None]] = field(default_factory=dict)
    checkpoints: dict[str, tuple[float, int]] = field(default_factory=dict)
    gate: threading.Event | None = None
    _recorded: threading.Condition = field(default_factory=threading.Condition)

    # -- test controls -----------------------------------------------------------------------

    def hold(self) -> None:
        """Heavy calls block (after being recorded) until release()."""
        self.gate = threading.Event()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()
            self.gate = None

    def wait_for_calls(self, count: int, timeout: float = 20.0) -> list[tuple[str, str | None, Any]]:
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"expected {count} engine calls, saw {self.calls}")
            return list(self.calls)

    def _enter(self, name: str, model_id: str | None, detail: Any = None) -> None:
        with self._recorded:
            self.calls.append((name, model_id, detail))
            self._recorded.notify_all()
        gate = self.gate
        if gate is not None and not gate.wait(30):
            raise RuntimeError("test gate never released")

    def _model(self, model_id: str) -> _Model:
        if model_id not in self.models:
            raise NotFoundError(f"unknown model {model_id!r}", field="model_id")
        return self.models[model_id]

    # -- cheap metadata ----------------------------------------------------------------------

    def supported_models(self) -> list[types.SupportedModel]:
        return [types.SupportedModel(model_name=BASE_MODEL, max_context_length=CONTEXT)]

    def model_limits(self, base_model: str) -> ModelLimits:
        if base_model != BASE_MODEL:
            raise NotFoundError(f"unknown base model {base_model!r}", field="base_model")
        return ModelLimits(vocab_size=VOCAB, max_context_length=CONTEXT)

    def tokenizer(self, base_model: str) -> types.TokenizerResponse:
        self.model_limits(base_model)
        return types.TokenizerResponse(model_name=base_model, tokenizer_json="{}", eos_token="<eos>")

    def base_model_of(self, model_id: str) -> str:
        return self._model(model_id).base_model

    def sampler_base_model(self, sampler_id: str) -> str:
        if sampler_id not in self.samplers:
            raise NotFoundError(f"unknown sampler {sampler_id!r}", field="sampling_session_id")
        return self.samplers[sampler_id][0]

    def get_info(self, model_id: str) -> types.GetInfoResponse:
        model = self._model(model_id)
        return types.GetInfoResponse(
            model_id=model_id,
            model_data=types.ModelData(model_name=model.base_model),
            is_lora=model.lora_rank > 0,
            lora_rank=model.lora_rank,
        )

    def get_sampler(self, sampler_id: str) -> types.GetSamplerResponse:
        base, _, path = self.samplers.get(sampler_id) or (None, 0.0, None)
        if base is None:
            raise NotFoundError(f"unknown sampler {sampler_id!r}")
        return types.GetSamplerResponse(sampler_id=sampler_id, base_model=base, model_path=path)

    def weights_info(self, tinker_path: str) -> types.WeightsInfoResponse:
        if tinker_path not in self.checkpoints:
            raise NotFoundError(f"no checkpoint at {tinker_path!r}", field="path")
        return types.WeightsInfoResponse(base_model=BASE_MODEL, is_lora=False)

    def training_run(self, run_id: str) -> types.TrainingRun:
        if run_id not in self.models:
            raise NotFoundError(f"unknown training run {run_id!r}")
        return types.TrainingRun(
            training_run_id=run_id,
            base_model=BASE_MODEL,
            model_owner="local",
            is_lora=False,
            last_request_time=datetime.now(UTC),
        )

    def list_checkpoints(self, run_id: str) -> types.CheckpointsListResponse:
        self.training_run(run_id)
        now = datetime.now(UTC)
        return types.CheckpointsListResponse(
            checkpoints=[
                types.Checkpoint(
                    checkpoint_id=p.split("/", 3)[3], checkpoint_type="training", time=now, tinker_path=p
                )
                for p in self.checkpoints
                if p.startswith(f"tinker://{run_id}/")
            ]
        )

    # -- heavy work --------------------------------------------------------------------------

    def create_model(
        self,
        model_id: str,
        base_model: str,
        lora_config: types.LoraConfig | None,
        user_metadata: dict[str, Any] | None,
        reward_head: bool = False,
    ) -> types.CreateModelResponse:
        self._enter("create_model", model_id)
        rank = lora_config.rank if lora_config else 0
        if rank > 32:
            raise UserError(f"rank {rank} is too large for the fake engine", field="lora_config.rank")
        self.models[model_id] = _Model(base_model, rank)
        return types.CreateModelResponse(model_id=model_id)

    def unload_model(self, model_id: str) -> types.UnloadModelResponse:
        self._enter("unload_model", model_id)
        self._model(model_id)
        del self.models[model_id]
        return types.UnloadModelResponse(model_id=model_id, type="unload_model")

    def forward_backward(
        self, model_id: str, fwd: types.ForwardBackwardInput, backward: bool
    ) -> types.ForwardBackwardOutput:
        first = fwd.data[0].model_input.to_ints()[0]
        self._enter("forward_backward" if backward else "forward", model_id, first)
        if first == EXPLODE_TOKEN:
            raise RuntimeError("fake engine exploded")
        if first == REFUSE_TOKEN:
            raise UserError("fake engine refuses this datum", field="forward_backward_input.data.0")
        model = self._model(model_id)
        outputs = []
        tokens = 0
        for datum in fwd.data:
            n = datum.model_input.length
            tokens += n
            outputs.append({"logprobs": types.TensorData(data=[-model.w] * n, dtype="float32", shape=[n])})
        if backward:
            model.grad += tokens
        return types.ForwardBackwardOutput(
            loss_fn_outputs=outputs, metrics={"loss:sum": model.w * tokens, "w:unique": model.w}
        )

    def optim_step(self, model_id: str, adam: types.AdamParams) -> types.OptimStepResponse:
        self._enter("optim_step", model_id, adam.learning_rate)
        model = self._model(model_id)
        model.w -= adam.learning_rate * model.grad
        model.grad = 0.0
        model.step += 1
        return types.OptimStepResponse(metrics={"step": model.step, "w": model.w})

    def save_state(
        self, model_id: str, name: str, overwrite: bool, ttl_seconds: int | None
    ) -> types.SaveWeightsResponse:
        self._enter("save_state", model_id, name)
        model = self._model(model_id)
        path = f"tinker://{model_id}/weights/{name}"
        if path in self.checkpoints and not overwrite:
            raise ConflictError(f"checkpoint {path} exists")
        self.checkpoints[path] = (model.w, model.step)
        return types.SaveWeightsResponse(path=path)

    def load_state(self, model_id: str, tinker_path: str, optimizer: bool) -> types.LoadWeightsResponse:
        self._enter("load_state", model_id, tinker_path)
        model = self._model(model_id)
        model.w, step = self.checkpoints[tinker_path]
        if optimizer:
            model.step = step
        return types.LoadWeightsResponse(path=tinker_path)

    def save_sampler_weights(
        self, model_id: str, name: str | None, ttl_seconds: int | None
    ) -> types.SaveWeightsForSamplerResponseInternal:
        self._enter("save_sampler_weights", model_id, name)
        model = self._model(model_id)
        if name is None:
            sampler_id = f"sampler-{len(self.samplers)}"
            self.samplers[sampler_id] = (model.base_model, model.w, None)
            return types.SaveWeightsForSamplerResponseInternal(sampling_session_id=sampler_id)
        path = f"tinker://{model_id}/sampler_weights/{name}"
        self.checkpoints[path] = (model.w, model.step)
        return types.SaveWeightsForSamplerResponseInternal(path=path)

    def create_sampler(self, base_model: str | None, model_path: str | None) -> types.GetSamplerResponse:
        self._enter("create_sampler", None, model_path or base_model)
        sampler_id = f"sampler-{len(self.samplers)}"
        w = self.checkpoints[model_path][0] if model_path else 0.0
        self.samplers[sampler_id] = (base_model or BASE_MODEL, w, model_path)
        return types.GetSamplerResponse(
            sampler_id=sampler_id, base_model=base_model or BASE_MODEL, model_path=model_path
        )

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        self._enter("delete_checkpoint", run_id, checkpoint_id)
        path = f"tinker://{run_id}/{checkpoint_id}"
        if self.checkpoints.pop(path, None) is None:
            raise NotFoundError(f"no checkpoint at {path}")

    def release_sampler(self, sampler_id: str) -> None:
        self._enter("release_sampler", sampler_id, None)
        self.samplers.pop(sampler_id, None)

    def sweep_storage(self) -> None:
        self._enter("sweep_storage", None, None)

    def sample(self, jobs: list[SampleJob]) -> list[types.SampleResponse | Exception]:
        self._enter("sample", None, len(jobs))
        results: list[types.SampleResponse | Exception] = []
        for job in jobs:
            prompt = job.request.prompt.to_ints()
            if prompt[0] == POISON_TOKEN:
                results.append(UserError("poisoned prompt", field="prompt"))
                continue
            w = self.samplers[job.sampler_id][1]
            seed = job.request.sampling_params.seed or 0
            n = job.request.sampling_params.max_tokens or 1
            results.append(
                types.SampleResponse(
                    sequences=[
                        types.SampledSequence(
                            stop_reason="length",
                            tokens=[(int(w) + seed + i + t) % VOCAB for t in range(n)],
                            logprobs=[-1.0] * n,
                        )
                        for i in range(job.request.num_samples)
                    ]
                )
            )
        return results
