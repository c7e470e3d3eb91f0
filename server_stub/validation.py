"""Request validation, the one place for what a request means: pure functions, no torch, no engine state.

The wire types check a body's shape and types when it is parsed (`parse_wire`); everything else a
request must satisfy (ranges, lengths, token ids, the inputs and settings its loss takes, from the
loss table) is checked here, by one `check_*` function per request. The routes call them at POST
time, because once queued a bad request would only fail later inside the compute thread (and, for
training calls, hold up every later call of that model); the engine calls the same functions on
its own inputs, so it never computes on bad input from any caller. Fields are named as dotted
paths, the same shape pydantic's error locations take ("forward_backward_input.data.2.loss_fn_inputs.weights").
Each check raises `UserError` (400) or `NotFoundError` (404) from the engine contract.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from cookbook.client import types
from server_stub.engine import ModelLimits, UserError
from server_stub.training.adamw import OPTIMIZER
from server_stub.training.losses import LOSSES, PER_TARGET_INPUTS, TARGET_INPUT, Loss, ScoreLoss

M = TypeVar("M", bound=types.WireModel)

FLOAT32_MAX = 3.4028234663852886e38
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def schema_error(exc: ValidationError, what: str) -> UserError:
    """A wire type's validation failure as a UserError naming the first field at fault."""
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    field = ".".join(loc) or None
    if first["type"] == "json_invalid":
        return UserError(f"malformed JSON body: {first['msg']}", field="body")
    if loc and loc[-1] == "loss_fn" and isinstance(first.get("input"), str):
        return unknown_loss(first["input"], field or "loss_fn")
    more = exc.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    prefix = f"{field}: " if field else f"{what}: "
    return UserError(f"{prefix}{first['msg']}{suffix}", field=field)


def parse_wire(raw: bytes, model: type[M]) -> M:
    """Parse a JSON body into a wire type; any problem is a UserError naming the field."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise schema_error(exc, model.__name__) from None


# ---------------------------------------------------------------------------------------------
# Small shared checks
# ---------------------------------------------------------------------------------------------


def _fail(field: str, problem: str) -> UserError:
    return UserError(f"{field}: {problem}", field=field)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def unknown_loss(name: str, field: str = "loss_fn") -> UserError:
    """A loss this server does not implement (the official SDK also knows gspo, stable_reinforce, custom)."""
    return _fail(
        field, f"must be one of {', '.join(LOSSES)}, got {name!r} (a loss this server does not implement)"
    )


def check_optimizer_config(config: types.OptimizerConfig | None, field: str = "optimizer_config") -> None:
    if config is not None and config.type != OPTIMIZER:
        raise _fail(
            f"{field}.type", f"optimizer {config.type!r} is not supported; this server runs {OPTIMIZER}"
        )


def require_seq_id(seq_id: int | None, field: str = "seq_id") -> int:
    """Training calls run in seq_id order (1, 2, 3, ... per model), so they must carry one."""
    if seq_id is None:
        raise _fail(field, "is required for training calls (1, 2, 3, ... per model, in call order)")
    if seq_id < 1:
        raise _fail(field, f"must be >= 1, got {seq_id}")
    return seq_id


def require_model_id(model_id: str | None, field: str = "model_id") -> str:
    if not model_id:
        raise _fail(field, "is required")
    return model_id


def check_safe_name(name: str, field: str) -> str:
    """A checkpoint name or run id that is safe as one directory name inside the storage dir."""
    if not types.SAFE_NAME_RE.match(name) or ".." in name:
        raise _fail(
            field,
            f"{name!r} is not a valid name (letters, digits and _.:=- only, no '..', "
            "no '/', at most 128 characters, not starting with '.' or '-')",
        )
    return name


def parse_tinker_path(path: str, field: str = "path") -> types.ParsedCheckpointTinkerPath:
    try:
        return types.ParsedCheckpointTinkerPath.from_tinker_path(path)
    except ValueError as exc:
        raise _fail(field, str(exc)) from None


def check_ttl(ttl_seconds: int | None, field: str = "ttl_seconds") -> None:
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise _fail(field, f"must be positive (or omitted for no expiry), got {ttl_seconds}")


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise _fail(field, f"must be finite, got {value}")
    return value


def check_lora_config(lora: types.LoraConfig | None, field: str = "lora_config") -> None:
    """rank 0 (full-weight training) or a power of two, and something to train."""
    if lora is None:
        return
    rank = lora.rank
    if rank < 0 or (rank > 0 and rank & (rank - 1)):
        raise _fail(f"{field}.rank", f"must be 0 (full-weight training) or a power of two, got {rank}")
    if rank > 0 and not (lora.train_attn or lora.train_mlp or lora.train_unembed):
        raise _fail(field, "at least one of train_attn, train_mlp, train_unembed must be true")


def check_adam_params(adam: types.AdamParams, field: str = "adam_params") -> None:
    lr = _finite(adam.learning_rate, f"{field}.learning_rate")
    if lr < 0:
        raise _fail(f"{field}.learning_rate", f"must be >= 0, got {lr}")
    for name in ("beta1", "beta2"):
        beta = _finite(getattr(adam, name), f"{field}.{name}")
        if not 0 <= beta < 1:
            raise _fail(f"{field}.{name}", f"must be in [0, 1), got {beta}")
    if not _finite(adam.eps, f"{field}.eps") > 0:
        raise _fail(f"{field}.eps", f"must be > 0, got {adam.eps}")
    for name in ("weight_decay", "grad_clip_norm"):
        value = _finite(getattr(adam, name), f"{field}.{name}")
        if value < 0:
            raise _fail(f"{field}.{name}", f"must be >= 0, got {value}")


def _check_token_ids(tokens: Sequence[int], vocab_size: int, field: str) -> None:
    if tokens and (min(tokens) < 0 or max(tokens) >= vocab_size):
        index, bad = next((i, t) for i, t in enumerate(tokens) if not 0 <= t < vocab_size)
        raise _fail(field, f"token id {bad} at position {index} is outside the vocabulary [0, {vocab_size})")


def _check_floats(values: Sequence[float], field: str) -> None:
    """No NaN/inf and nothing float32 cannot hold; fast path is one sum, the slow path finds the culprit."""
    if not values:
        return
    total = sum(values)
    if math.isfinite(total) and max(values) <= FLOAT32_MAX and min(values) >= -FLOAT32_MAX:
        return
    index, bad = next((i, v) for i, v in enumerate(values) if not math.isfinite(v) or abs(v) > FLOAT32_MAX)
    problem = "non-finite" if not math.isfinite(bad) else "out of float32 range"
    raise _fail(field, f"{problem} value {bad} at position {index}")


# ---------------------------------------------------------------------------------------------
# Training inputs
# ---------------------------------------------------------------------------------------------


def _tensor_shape(tensor: types.TensorData, field: str) -> list[int]:
    """The tensor's logical shape, after checking that data, shape and sparse indices agree."""
    n = len(tensor.data)
    if tensor.sparse_crow_indices is not None or tensor.sparse_col_indices is not None:
        shape = tensor.shape
        crow, col = tensor.sparse_crow_indices, tensor.sparse_col_indices
        if shape is None or len(shape) != 2 or crow is None or col is None:
            raise _fail(field, "a sparse tensor needs a 2-D shape and both crow and col indices")
        rows, cols = shape
        if (
            rows < 0
            or cols < 0
            or len(crow) != rows + 1
            or crow[0] != 0
            or crow[-1] != n
            or len(col) != n
            or any(b < a for a, b in itertools.pairwise(crow))
            or (col and (min(col) < 0 or max(col) >= cols))
        ):
            raise _fail(field, f"inconsistent sparse CSR indices for shape {shape} with {n} values")
        return list(shape)
    if tensor.shape is None:
        return [n]
    if any(dim < 0 for dim in tensor.shape) or math.prod(tensor.shape) != n:
        raise _fail(field, f"shape {tensor.shape} does not match {n} data values")
    return list(tensor.shape)


def _check_datum(
    datum: types.Datum, index: int, loss: Loss | ScoreLoss, limits: ModelLimits, prefix: str
) -> None:
    where = _join(prefix, f"data.{index}")
    tokens = datum.model_input.to_ints()
    length = len(tokens)
    if length == 0:
        raise _fail(f"{where}.model_input", "is empty")
    if length > limits.max_context_length:
        raise _fail(
            f"{where}.model_input",
            f"sequence length {length} exceeds the model's context length {limits.max_context_length}",
        )
    _check_token_ids(tokens, limits.vocab_size, f"{where}.model_input")

    inputs = datum.loss_fn_inputs
    if isinstance(loss, ScoreLoss):
        if inputs:
            key = min(inputs)  # the same key whatever order the wire kept
            raise _fail(
                f"{where}.loss_fn_inputs.{key}",
                f"is not an input of {loss.name}: it reads the reward head's score, send no loss_fn_inputs",
            )
        return
    for key in loss.required_inputs:
        if key not in inputs:
            raise _fail(
                f"{where}.loss_fn_inputs",
                f"missing {key!r}, which {loss.name} requires (needs {', '.join(loss.required_inputs)})",
            )
    for key in inputs:
        if key not in loss.inputs:
            raise _fail(
                f"{where}.loss_fn_inputs.{key}",
                f"is not an input of {loss.name} (accepted: {', '.join(loss.inputs)})",
            )

    target_field = f"{where}.loss_fn_inputs.{TARGET_INPUT}"
    target = inputs[TARGET_INPUT]
    target_shape = _tensor_shape(target, target_field)
    if target.dtype != "int64":  # the wire type has already made int64 data exact ints
        raise _fail(target_field, f"must have dtype int64, got {target.dtype}")
    if len(target_shape) > (2 if loss.multi_target else 1):
        raise _fail(
            target_field, f"must be 1-D{' or 2-D' if loss.multi_target else ''}, got shape {target_shape}"
        )
    if target_shape[0] != length:
        raise _fail(target_field, f"length {target_shape[0]} != model_input length {length}")
    _check_token_ids(target.data, limits.vocab_size, target_field)  # type: ignore[arg-type]

    for key, tensor in inputs.items():
        if key == TARGET_INPUT:
            continue
        field = f"{where}.loss_fn_inputs.{key}"
        shape = _tensor_shape(tensor, field)
        if key in PER_TARGET_INPUTS and shape != target_shape:
            raise _fail(field, f"shape {shape} != {TARGET_INPUT} shape {target_shape}")
        if len(shape) != 1 and key not in PER_TARGET_INPUTS:
            raise _fail(field, f"must be 1-D, got shape {shape}")
        if shape[0] != length:
            raise _fail(field, f"length {shape[0]} != target length {length}")
        _check_floats(tensor.data, field)


def check_forward_backward_input(
    fwd: types.ForwardBackwardInput, limits: ModelLimits, prefix: str = "forward_backward_input"
) -> None:
    """Everything the chosen loss needs (its row of `LOSSES`), of the right length, with in-vocab ids
    and finite values."""
    loss = LOSSES.get(fwd.loss_fn)
    if loss is None:
        raise unknown_loss(fwd.loss_fn, _join(prefix, "loss_fn"))
    if not fwd.data:
        raise _fail(_join(prefix, "data"), "is empty: send at least one Datum")
    settings = loss.config_defaults
    for key, value in (fwd.loss_fn_config or {}).items():
        field = _join(prefix, f"loss_fn_config.{key}")
        if key not in settings:
            raise _fail(
                field,
                f"is not a setting of {loss.name} (accepted: {', '.join(settings) if settings else 'none'})",
            )
        _finite(value, field)
    for index, datum in enumerate(fwd.data):
        _check_datum(datum, index, loss, limits, prefix)
    if isinstance(loss, ScoreLoss) and loss.paired and len(fwd.data) % 2:
        raise _fail(
            _join(prefix, "data"),
            f"{loss.name} takes consecutive [chosen, rejected] pairs, got {len(fwd.data)} datums: "
            f"the last pair (datum {len(fwd.data) - 1}) has no rejected side",
        )


def check_reward_loss_call(
    loss_fn: str, backward: bool, has_reward_head: bool, model_id: str, field: str
) -> None:
    """A score loss needs a model with a reward head; a forward-only one (reward_score) is refused a backward."""
    loss = LOSSES.get(loss_fn)
    if not isinstance(loss, ScoreLoss):
        return
    if not has_reward_head:
        raise _fail(
            field,
            f"{loss_fn} reads a reward head, and model {model_id!r} has none (create the model with "
            f"reward_head=true; the server lists {types.EXTENSION_REWARD_HEAD!r} in its capabilities' extensions)",
        )
    if backward and loss.forward_only:
        raise _fail(field, f"{loss_fn} only reads scores: send it to forward, not forward_backward")


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def _check_stop(stop: str | list[str] | list[int] | None, vocab_size: int, field: str) -> None:
    if stop is None:
        return
    items: list[Any] = [stop] if isinstance(stop, str) else list(stop)
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise _fail(
                    f"{field}.{i}" if not isinstance(stop, str) else field, "stop strings must not be empty"
                )
        elif not 0 <= item < vocab_size:
            raise _fail(f"{field}.{i}", f"stop token id {item} is outside the vocabulary [0, {vocab_size})")


def check_sample_request(req: types.SampleRequest, limits: ModelLimits, max_num_samples: int) -> None:
    """Sampling settings that make sense and a prompt + generation that fits the context."""
    if not 1 <= req.num_samples <= max_num_samples:
        raise _fail("num_samples", f"must be in [1, {max_num_samples}], got {req.num_samples}")
    prompt = req.prompt.to_ints()
    if not prompt:
        raise _fail("prompt", "is empty")
    _check_token_ids(prompt, limits.vocab_size, "prompt")
    params, where = req.sampling_params, "sampling_params"
    context = limits.max_context_length
    if params.max_tokens is not None:
        if params.max_tokens < 1:
            raise _fail(
                f"{where}.max_tokens",
                f"must be >= 1 (or null for up to the context length), got {params.max_tokens}",
            )
        if len(prompt) + params.max_tokens > context:
            raise _fail(
                f"{where}.max_tokens",
                f"prompt length {len(prompt)} + max_tokens {params.max_tokens} "
                f"exceeds the model's context length {context}",
            )
    elif len(prompt) >= context:
        raise _fail(
            "prompt",
            f"prompt length {len(prompt)} leaves no room to generate within the context length {context}",
        )
    if _finite(params.temperature, f"{where}.temperature") < 0:
        raise _fail(f"{where}.temperature", f"must be >= 0 (0 = greedy), got {params.temperature}")
    if params.top_k != -1 and params.top_k < 1:
        raise _fail(f"{where}.top_k", f"must be -1 (off) or >= 1, got {params.top_k}")
    if not 0 < _finite(params.top_p, f"{where}.top_p") <= 1:
        raise _fail(f"{where}.top_p", f"must be in (0, 1], got {params.top_p}")
    if params.seed is not None and not SEED_MIN <= params.seed <= SEED_MAX:
        raise _fail(f"{where}.seed", f"must fit in 64 bits, got {params.seed}")
    _check_stop(params.stop, limits.vocab_size, f"{where}.stop")
    if not 0 <= req.topk_prompt_logprobs <= limits.vocab_size:
        raise _fail(
            "topk_prompt_logprobs", f"must be in [0, {limits.vocab_size}], got {req.topk_prompt_logprobs}"
        )


# ---------------------------------------------------------------------------------------------
# Requests: one check per route body; ordered training calls take the model's limits
# ---------------------------------------------------------------------------------------------


def check_create_model(req: types.CreateModelRequest) -> None:
    check_lora_config(req.lora_config)
    check_optimizer_config(req.optimizer_config)


def check_optim_step(req: types.OptimStepRequest, limits: ModelLimits) -> None:
    check_adam_params(req.adam_params)


def check_save_weights(req: types.SaveWeightsRequest, limits: ModelLimits) -> None:
    if req.path is None:
        raise _fail("path", "a checkpoint name is required")
    check_safe_name(req.path, "path")
    check_ttl(req.ttl_seconds)


def check_save_weights_for_sampler(req: types.SaveWeightsForSamplerRequest, limits: ModelLimits) -> None:
    if req.path is not None:  # no name: an ephemeral sampler, answered with a sampling session id
        check_safe_name(req.path, "path")
    check_ttl(req.ttl_seconds)


def check_load_weights(req: types.LoadWeightsRequest, limits: ModelLimits) -> None:
    parse_tinker_path(req.path, "path")
    check_optimizer_config(req.optimizer_config)


def check_load_as_new_model(req: types.LoadWeightsRequest, checkpoint_base_model: str) -> tuple[str, int]:
    """A load that creates its training model (no model_id): what the new model needs.

    Returns the (session_id, model_seq_id) that name the new model."""
    if req.session_id is None or req.model_seq_id is None:
        raise _fail(
            "model_id",
            "give model_id and seq_id to load into a live model, or session_id and model_seq_id "
            "to create a training model from the checkpoint",
        )
    if req.base_model is not None and req.base_model != checkpoint_base_model:
        raise _fail(
            "base_model", f"{req.base_model!r} differs from the checkpoint's {checkpoint_base_model!r}"
        )
    if req.optimizer and req.optimizer_config is not None:
        raise _fail(
            "optimizer_config", "the checkpoint's optimizer state is loaded; leave optimizer_config out"
        )
    check_optimizer_config(req.optimizer_config)
    return req.session_id, req.model_seq_id


def check_sampler_source(base_model: str | None, model_path: str | None) -> None:
    """A sampler samples a base model or a sampler checkpoint, so it needs one of them."""
    if model_path is not None:
        parse_tinker_path(model_path, "model_path")
    elif base_model is None:
        raise UserError("give base_model or model_path", field="base_model")


def check_sample_target(req: types.SampleRequest) -> None:
    """A sample request names its sampler, or (the older form) the base model or checkpoint to sample."""
    if req.sampling_session_id is None and req.base_model is None and req.model_path is None:
        raise UserError(
            "sampling_session_id is required (from create_sampling_session or "
            "save_weights_for_sampler), or give base_model / model_path",
            field="sampling_session_id",
        )
