"""The wire format shared by the client SDK and the server.

These pydantic models are the single definition of the JSON that travels between
`cookbook.client` and `server_stub`. They follow the Tinker SDK 0.24.x JSON wire so that
the official SDK can talk to our server: field names, defaults and `type` literals match.
Request models ignore unknown fields (newer SDKs send more); response models do too.
This module must not import torch: torch conversions are imported lazily.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import torch

ModelID: TypeAlias = str
RequestID: TypeAlias = str
TensorDtype: TypeAlias = Literal["int64", "float32"]
# Loss names: exactly the rows of the server's loss table (server_stub/training/losses.py), as a test checks.
# The policy-gradient losses read the sampler's `logprobs` and per-token `advantages`.
RLLossFnType: TypeAlias = Literal["importance_sampling", "ppo", "cispo", "dro"]
# Our extension (EXTENSION_REWARD_HEAD): losses on the reward head's one score per datum, not on logprobs.
RewardLossFnType: TypeAlias = Literal["bradley_terry", "reward_score"]
LossFnType: TypeAlias = Literal["cross_entropy", RLLossFnType, RewardLossFnType]
StopReason: TypeAlias = Literal["length", "stop"]
CheckpointType: TypeAlias = Literal["training", "sampler"]

LOSS_FN_NAMES: tuple[str, ...] = get_args(LossFnType)
RL_LOSS_FN_NAMES: tuple[str, ...] = get_args(RLLossFnType)
REWARD_LOSS_FN_NAMES: tuple[str, ...] = get_args(RewardLossFnType)
# Metric keys are `name:reduction`; these are the reductions a client knows how to merge.
METRIC_REDUCTIONS: tuple[str, ...] = ("sum", "mean", "min", "max", "slack", "unique", "hash_unordered")


class WireModel(BaseModel):
    """Base of every wire type: unknown fields are ignored so old and new peers interoperate."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())


# ---------------------------------------------------------------------------------------------
# Model inputs and tensors
# ---------------------------------------------------------------------------------------------


class EncodedTextChunk(WireModel):
    """A run of token ids."""

    tokens: list[int]
    type: Literal["encoded_text"] = "encoded_text"

    @property
    def length(self) -> int:
        return len(self.tokens)


ModelInputChunk: TypeAlias = EncodedTextChunk


class ModelInput(WireModel):
    """The tokens a model reads, as a list of chunks (only text chunks exist here)."""

    chunks: list[ModelInputChunk]

    @classmethod
    def from_ints(cls, tokens: list[int]) -> ModelInput:
        return cls(chunks=[EncodedTextChunk(tokens=list(tokens))])

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(chunks=[])

    def to_ints(self) -> list[int]:
        return [tok for chunk in self.chunks for tok in chunk.tokens]

    @property
    def length(self) -> int:
        return sum(chunk.length for chunk in self.chunks)

    def append(self, chunk: ModelInputChunk) -> ModelInput:
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        return self.append(EncodedTextChunk(tokens=[token]))


_NUMPY_DTYPES: dict[str, Any] = {"int64": np.int64, "float32": np.float32}


class TensorData(WireModel):
    """A flat tensor on the wire: data, dtype and shape (optionally CSR-sparse when 2-D)."""

    # Parsed as floats first (one pass; pydantic's smart int|float union is several times slower),
    # then int64 tensors are turned back into exact ints by the validator below.
    data: list[float] | list[int] = Field(union_mode="left_to_right")
    dtype: TensorDtype
    shape: list[int] | None = None
    sparse_crow_indices: list[int] | None = None
    sparse_col_indices: list[int] | None = None

    @model_validator(mode="after")
    def _exact_ints_for_int64(self) -> TensorData:
        if self.dtype == "int64" and self.data and not isinstance(self.data[0], int):
            values = np.asarray(self.data, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError("int64 tensor holds a non-finite value")
            ints = values.astype(np.int64)
            if not np.array_equal(ints, values):
                raise ValueError("int64 tensor holds non-integer values")
            self.data = ints.tolist()
        return self

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> TensorData:
        if array.dtype.kind in ("i", "u", "b"):
            dtype: TensorDtype = "int64"
        elif array.dtype.kind == "f":
            dtype = "float32"
        else:
            raise ValueError(f"unsupported numpy dtype {array.dtype} for TensorData")
        arr = array.astype(_NUMPY_DTYPES[dtype], copy=False)
        return cls(data=arr.reshape(-1).tolist(), dtype=dtype, shape=list(arr.shape))

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> TensorData:
        return cls.from_numpy(
            tensor.detach().cpu().float().numpy()
            if tensor.is_floating_point()
            else tensor.detach().cpu().numpy()
        )

    def to_numpy(self) -> np.ndarray:
        np_dtype = _NUMPY_DTYPES[self.dtype]
        if self.sparse_crow_indices is not None:
            if self.shape is None or len(self.shape) != 2 or self.sparse_col_indices is None:
                raise ValueError("sparse TensorData needs a 2-D shape and column indices")
            dense = np.zeros(self.shape, dtype=np_dtype)
            values = np.asarray(self.data, dtype=np_dtype)
            crow = self.sparse_crow_indices
            for row in range(self.shape[0]):
                lo, hi = crow[row], crow[row + 1]
                dense[row, self.sparse_col_indices[lo:hi]] = values[lo:hi]
            return dense
        arr = np.asarray(self.data, dtype=np_dtype)
        return arr.reshape(self.shape) if self.shape is not None else arr

    def to_torch(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.to_numpy())

    def tolist(self) -> list[Any]:
        return self.to_numpy().tolist()


# Loss input keys the client coerces to a wire dtype; anything else keeps the array's own kind.
LOSS_INPUT_DTYPES: dict[str, TensorDtype] = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
    "clip_low_threshold": "float32",
    "clip_high_threshold": "float32",
}


def _to_tensor_data(key: str, value: Any) -> Any:
    """Coerce lists / numpy arrays / torch tensors into TensorData, using the key's dtype."""
    if isinstance(value, (TensorData, dict)):
        return value
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        wire = LOSS_INPUT_DTYPES.get(key)
        if wire is not None:
            value = value.astype(_NUMPY_DTYPES[wire])
        return TensorData.from_numpy(value)
    return value


class Datum(WireModel):
    """One training example: the model input and the named per-token loss inputs."""

    model_input: ModelInput
    loss_fn_inputs: dict[str, TensorData]

    @model_validator(mode="before")
    @classmethod
    def _coerce_arrays(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("loss_fn_inputs"), dict):
            data = dict(data)
            data["loss_fn_inputs"] = {k: _to_tensor_data(k, v) for k, v in data["loss_fn_inputs"].items()}
        return data


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class ForwardBackwardInput(WireModel):
    data: list[Datum]
    loss_fn: LossFnType
    loss_fn_config: dict[str, float] | None = None


class ForwardBackwardRequest(WireModel):
    forward_backward_input: ForwardBackwardInput
    model_id: ModelID
    seq_id: int | None = None


class ForwardRequest(WireModel):
    forward_input: ForwardBackwardInput
    model_id: ModelID
    seq_id: int | None = None


LossFnOutput: TypeAlias = dict[str, TensorData]


# A reward loss's per-datum output: the head's score, a float32 tensor of shape [1] (instead of `logprobs`).
REWARD_SCORE_OUTPUT = "scores"


class ForwardBackwardOutput(WireModel):
    """Per-datum outputs (`logprobs`; `scores` for a reward loss) and `name:reduction` metrics."""

    loss_fn_output_type: str = "ArrayRecord"
    loss_fn_outputs: list[LossFnOutput]
    metrics: dict[str, float] = Field(default_factory=dict)


class AdamParams(WireModel):
    """AdamW settings for one optimizer step (Tinker's defaults; weight decay is decoupled)."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


class OptimStepRequest(WireModel):
    adam_params: AdamParams
    model_id: ModelID
    seq_id: int | None = None
    type: Literal["optim_step"] = "optim_step"


class OptimStepResponse(WireModel):
    metrics: dict[str, float] | None = None


class LoraConfig(WireModel):
    """LoRA settings. `rank=0` asks this server for full-weight training instead of LoRA."""

    rank: int
    seed: int | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True


class OptimizerConfig(WireModel):
    """Which optimizer a new training model gets (SDK 0.38+ sends it); this server runs AdamW only."""

    type: str = "adamw"


class CreateModelRequest(WireModel):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, Any] | None = None
    lora_config: LoraConfig | None = None
    optimizer_config: OptimizerConfig | None = None
    # Our extension (EXTENSION_REWARD_HEAD): True adds a scalar reward head; None (Tinker's wire): no head.
    reward_head: bool | None = None
    type: Literal["create_model"] = "create_model"


class CreateModelResponse(WireModel):
    model_id: ModelID
    type: Literal["create_model"] = "create_model"


class UnloadModelRequest(WireModel):
    model_id: ModelID
    type: Literal["unload_model"] = "unload_model"


class UnloadModelResponse(WireModel):
    model_id: ModelID
    type: Literal["unload_model"] | None = None


class ChatFormat(WireModel):
    """Our extension: a base model's own chat template (Jinja, as in tokenizer_config.json) and special tokens."""

    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None


class ModelData(WireModel):
    arch: str | None = None
    model_name: str | None = None
    tokenizer_id: str | None = None
    chat_format: ChatFormat | None = None  # our extension; None from Tinker or an older server


class GetInfoRequest(WireModel):
    model_id: ModelID
    type: Literal["get_info"] = "get_info"


class GetInfoResponse(WireModel):
    type: Literal["get_info"] | None = None
    model_data: ModelData
    model_id: ModelID
    is_lora: bool | None = None
    lora_rank: int | None = None
    model_name: str | None = None
    reward_head: bool | None = None  # our extension: True when the model has a reward head


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


class SaveWeightsRequest(WireModel):
    model_id: ModelID
    path: str | None = None
    seq_id: int | None = None
    ttl_seconds: int | None = None
    overwrite: bool = False
    type: Literal["save_weights"] = "save_weights"


class SaveWeightsResponse(WireModel):
    path: str
    type: Literal["save_weights"] | None = None


class SaveWeightsForSamplerRequest(WireModel):
    model_id: ModelID
    path: str | None = None
    sampling_session_seq_id: int | None = None
    seq_id: int | None = None
    ttl_seconds: int | None = None
    type: Literal["save_weights_for_sampler"] = "save_weights_for_sampler"


class SaveWeightsForSamplerResponseInternal(WireModel):
    """What the server answers: a path when named, a sampling session id when ephemeral."""

    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class SaveWeightsForSamplerResponse(WireModel):
    path: str
    type: Literal["save_weights_for_sampler"] | None = None


class LoadWeightsRequest(WireModel):
    """Into a live model (`model_id` + `seq_id`), or, with `session_id` + `model_seq_id` instead, into a
    new training model made from the checkpoint, whose id is `{session_id}:train:{model_seq_id}`."""

    model_id: ModelID | None = None
    seq_id: int | None = None
    session_id: str | None = None
    model_seq_id: int | None = None
    base_model: str | None = None
    user_metadata: dict[str, Any] | None = None
    path: str
    optimizer: bool
    optimizer_config: OptimizerConfig | None = None
    weights_access_token: str | None = None
    type: Literal["load_weights"] = "load_weights"


class LoadWeightsResponse(WireModel):
    path: str | None = None
    model_id: str | None = None
    type: Literal["load_weights"] | None = None


class WeightsInfoRequest(WireModel):
    tinker_path: str


class WeightsInfoResponse(WireModel):
    base_model: str
    is_lora: bool
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None
    reward_head: bool | None = None  # our extension: True when the checkpoint holds a reward head


# A scalar reward head (our extension): `reward_head=True` in create_model adds a linear layer that maps
# the final hidden state at the last token of each datum to one score; the losses in RewardLossFnType
# train and read it (`bradley_terry` takes datums in consecutive [chosen, rejected] pairs).
EXTENSION_REWARD_HEAD = "reward_head"

# A checkpoint's files as a tar behind a signed link: GET .../checkpoints/{kind}/{name}/archive, with
# `?format=` one of CHECKPOINT_EXPORT_FORMATS (our extension; Tinker's archive is "checkpoint";
# "peft_without_base" never bundles the base, for a caller who names the adapter's base itself).
EXTENSION_CHECKPOINT_ARCHIVE = "checkpoint_archive"
CheckpointExportFormat: TypeAlias = Literal["checkpoint", "peft", "peft_without_base", "merged"]
CHECKPOINT_EXPORT_FORMATS: tuple[str, ...] = get_args(CheckpointExportFormat)


class CheckpointArchiveUrlResponse(WireModel):
    """Where to download a checkpoint's archive (Tinker's answer shape) and until when the link works."""

    url: str
    expires: datetime


class Checkpoint(WireModel):
    checkpoint_id: str
    checkpoint_type: CheckpointType
    time: datetime
    tinker_path: str
    size_bytes: int | None = None
    public: bool = False
    expires_at: datetime | None = None


class CheckpointsListResponse(WireModel):
    checkpoints: list[Checkpoint]


class TrainingRun(WireModel):
    training_run_id: str
    base_model: str
    model_owner: str
    is_lora: bool
    corrupted: bool = False
    lora_rank: int | None = None
    last_request_time: datetime
    last_checkpoint: Checkpoint | None = None
    last_sampler_checkpoint: Checkpoint | None = None
    user_metadata: dict[str, str] | None = None


TINKER_SCHEME = "tinker://"
# Run ids and checkpoint names: no path separators, no leading dot, nothing a shell or a
# filesystem would treat specially. The server relies on this to keep paths in its storage dir.
# \Z, not $: "$" also matches before a trailing newline, which would let "ok\n" through.
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:=-]{0,127}\Z")


class ParsedCheckpointTinkerPath(WireModel):
    """`tinker://<run_id>/<weights|sampler_weights>/<name>`, validated."""

    tinker_path: str
    training_run_id: str
    checkpoint_type: CheckpointType
    checkpoint_id: str

    @classmethod
    def from_tinker_path(cls, tinker_path: str) -> ParsedCheckpointTinkerPath:
        if not tinker_path.startswith(TINKER_SCHEME):
            raise ValueError(f"checkpoint path must start with {TINKER_SCHEME!r}: {tinker_path!r}")
        parts = tinker_path[len(TINKER_SCHEME) :].split("/")
        if len(parts) != 3:
            raise ValueError(f"checkpoint path must be tinker://<run>/<kind>/<name>: {tinker_path!r}")
        run_id, kind, name = parts
        kinds: dict[str, CheckpointType] = {"weights": "training", "sampler_weights": "sampler"}
        if kind not in kinds:
            raise ValueError(f"checkpoint kind must be 'weights' or 'sampler_weights', got {kind!r}")
        for label, value in (("run id", run_id), ("checkpoint name", name)):
            if not SAFE_NAME_RE.match(value) or ".." in value:
                raise ValueError(f"invalid {label} {value!r} in {tinker_path!r}")
        return cls(
            tinker_path=tinker_path,
            training_run_id=run_id,
            checkpoint_type=kinds[kind],
            checkpoint_id=f"{kind}/{name}",
        )

    @property
    def name(self) -> str:
        return self.checkpoint_id.split("/", 1)[1]


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


class SamplingParams(WireModel):
    """Generation settings. temperature 0 is greedy; top_k -1 is off; stop keeps the stop text."""

    max_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | list[int] | None = None
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0


class CreateSamplingSessionRequest(WireModel):
    session_id: str
    sampling_session_seq_id: int
    base_model: str | None = None
    model_path: str | None = None
    type: Literal["create_sampling_session"] = "create_sampling_session"


class CreateSamplingSessionResponse(WireModel):
    type: Literal["create_sampling_session"] = "create_sampling_session"
    sampling_session_id: str


class SampleRequest(WireModel):
    num_samples: int = 1
    prompt: ModelInput
    sampling_params: SamplingParams
    base_model: str | None = None
    model_path: str | None = None
    sampling_session_id: str | None = None
    seq_id: int | None = None
    prompt_logprobs: bool | None = None
    topk_prompt_logprobs: int = 0
    type: Literal["sample"] = "sample"


class SampledSequence(WireModel):
    stop_reason: StopReason
    tokens: list[int]
    logprobs: list[float] | None = None


class SampleResponse(WireModel):
    sequences: list[SampledSequence]
    type: Literal["sample"] = "sample"
    prompt_logprobs: list[float | None] | None = None
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
    prompt_cache_hit_tokens: int = 0


class GetSamplerResponse(WireModel):
    sampler_id: str
    base_model: str
    model_path: str | None = None


# ---------------------------------------------------------------------------------------------
# Sessions, futures, server information
# ---------------------------------------------------------------------------------------------


class ClientConfigRequest(WireModel):
    sdk_version: str


class ClientConfigResponse(WireModel):
    """Feature flags for clients: SDK 0.24 stays on the JSON wire; 0.38 sends forward_backward as
    protobuf whatever they say, and the flags for services this server lacks stay off."""

    pjwt_auth_enabled: bool = False
    credential_default_source: str = "api_key"
    parallel_fwdbwd_chunks: bool = True
    fwdbwd_max_chunk_len: int = 1024
    fwdbwd_max_chunk_bytes_count: int = 5_000_000
    proto_write_fwdbwd: bool = False
    proto_compress_fwdbwd: bool = False
    fwd_via_fwdbwd: bool = False
    sample_max_concurrent_requests: int = 2000
    sample_enable_stuck_detection: bool = False
    sample_no_retries: bool = False
    use_pyqwest_transport: bool = False
    create_model_via_load_weights: bool = False
    sample_use_retrieve_futures: bool = False
    custom_loss_server_side: bool = False
    sample_join_sampling_session: bool = False


class DynamicConfigResponse(WireModel):
    refresh_interval_sec: int = 300


class CreateSessionRequest(WireModel):
    tags: list[str] = Field(default_factory=list)
    user_metadata: dict[str, Any] | None = None
    sdk_version: str = "unknown"
    project_id: str | None = None
    type: Literal["create_session"] = "create_session"


class CreateSessionResponse(WireModel):
    type: Literal["create_session"] = "create_session"
    info_message: str | None = None
    warning_message: str | None = None
    error_message: str | None = None
    session_id: str


class SessionHeartbeatRequest(WireModel):
    session_id: str
    type: Literal["session_heartbeat"] = "session_heartbeat"


class SessionHeartbeatResponse(WireModel):
    type: Literal["session_heartbeat"] = "session_heartbeat"


class SessionFinishReason(WireModel):
    type: str  # the SDK sends "success", "errored" or "interrupted"


class FinishSessionRequest(WireModel):
    """`POST /sessions/{session_id}/finish`: the client is done with its session (first reason wins)."""

    reason: SessionFinishReason
    detail: str | None = None


class FinishSessionResponse(WireModel):
    session_id: str
    reason: SessionFinishReason
    detail: str | None = None


class UntypedAPIFuture(WireModel):
    """What every long operation answers at once: the id to pass to retrieve_future."""

    request_id: RequestID
    model_id: ModelID | None = None
    # asample only: one id per requested sample, in the order of the response's sequences.
    sample_sequence_ids: list[str] | None = None


class FutureRetrieveRequest(WireModel):
    request_id: RequestID
    allow_metadata_only: bool = False


class TryAgainResponse(WireModel):
    type: Literal["try_again"] = "try_again"
    request_id: str
    queue_state: Literal["active", "paused_capacity", "paused_rate_limit"] = "active"


class RequestErrorCategory(StrEnum):
    Unknown = "unknown"
    Server = "server"
    User = "user"


class RequestFailedResponse(WireModel):
    error: str
    category: RequestErrorCategory


# Several asample requests in one exchange: POST /api/v1/asample_batch (our extension). Its one future's
# result is a SampleBatchResponse, one item per request in order: its response, or its error.
EXTENSION_SAMPLE_BATCH = "asample_batch"


class SampleBatchRequest(WireModel):
    requests: list[SampleRequest]
    type: Literal["sample_batch"] = "sample_batch"


class SampleBatchItem(WireModel):
    """One request's outcome: `response`, or `error` with its `category` (as RequestFailedResponse)."""

    response: SampleResponse | None = None
    error: str | None = None
    category: RequestErrorCategory | None = None


class SampleBatchResponse(WireModel):
    results: list[SampleBatchItem]
    type: Literal["sample_batch"] = "sample_batch"


class SupportedModel(WireModel):
    model_name: str | None = None
    max_context_length: int | None = None


# Request bodies a server reads: JSON always; "protobuf" for forward_backward (the 0.38 SDK's wire).
WIRE_FORMAT_JSON = "json"
WIRE_FORMAT_PROTOBUF = "protobuf"


class GetServerCapabilitiesResponse(WireModel):
    supported_models: list[SupportedModel]
    # Our extension: the request bodies this server reads; None (an older server, or Tinker's): JSON only.
    wire_formats: list[str] | None = None
    # Our extension: the routes and features beyond the Tinker wire this server offers (paths, EXTENSION_* names).
    extensions: list[str] | None = None

    def speaks(self, wire_format: str) -> bool:
        return wire_format in (self.wire_formats or [WIRE_FORMAT_JSON])


class HealthResponse(WireModel):
    status: Literal["ok"] = "ok"


# The server's compute and sampling threads, profiled: GET /api/v1/compute_time (our extension).
EXTENSION_COMPUTE_TIME = "compute_time"


class ComputeTimeResponse(WireModel):
    """Seconds the compute thread has been busy since it started, per kind ("training", "sampling", "other")."""

    seconds: dict[str, float]


class StorageUsageResponse(WireModel):
    """Our extension (GET /api/v1/storage_usage): disk the caller's checkpoints use, and its quota."""

    owner: str
    used_bytes: int
    limit_bytes: int


class TokenizerRequest(WireModel):
    """Our extension: fetch a base model's tokenizer so clients never need transformers."""

    model_name: str


class TokenizerResponse(WireModel):
    model_name: str
    tokenizer_json: str
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    chat_template: str | None = None  # the model's own Jinja chat template, when it has one


class ErrorBody(WireModel):
    """The JSON body of every 4xx/5xx answer: what went wrong and, when known, which field."""

    error: str
    category: RequestErrorCategory = RequestErrorCategory.User
    field: str | None = None


def is_finite_list(values: list[float] | list[int]) -> bool:
    """True when no value is NaN or infinite (cheap check used on both sides of the wire)."""
    return all(math.isfinite(v) for v in values)
