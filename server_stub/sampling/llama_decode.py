"""A lean decode step for Llama-family models: the same arithmetic as the Hugging Face module, fewer ops.

A decode step feeds one token per row. Through the Hugging Face module that step is mostly
per-call overhead (mask building, rotary tables, module dispatch, output objects); here it is
the model's tensor ops and nothing else: the weights are read from the module (LoRA adapters
included, as peft would apply them), rotary angles come from one table built per generation,
and keys/values go into the sampler's preallocated cache (`kv_cache.RoomyLayer`). On small models
the q/k/v and gate/up projections are fused (and active LoRA adapters merged) into copies kept
until a weight changes; on large ones the step is matmul-bound, so it reads the module's own
weights and adds LoRA as its low-rank product. Anything the step does not reproduce exactly
(biases, other rotary kinds, DoRA, ...) makes `plan_for` return None, and the caller keeps the
Hugging Face module.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server_stub.sampling.kv_cache import RoomyLayer

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

# Models whose parameters fit in this many bytes get fused, LoRA-merged weight copies: there the
# per-op overhead a fused matmul saves outweighs the copy; beyond it the matmuls dominate.
FUSE_MAX_BYTES = 64 << 20
# Their sampling (prompts and decode steps) also runs on one thread: each op is too small to split,
# and every parallel op would pay a thread wake-up (bench/README.md, "The lean decode step").
SMALL_MODEL_DECODE_THREADS = 1
# Rotary kinds whose angles depend on the position only (the table below is exact for them).
_STATIC_ROPE = ("default", "linear", "llama3")

_plans: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, DecodePlan]] = weakref.WeakKeyDictionary()


@dataclass
class _Piece:
    """One output block of a projection: y = x W^T + sum of scale * (x A^T) B^T over low-rank terms."""

    weight: torch.Tensor
    low_rank: list[tuple[torch.Tensor, torch.Tensor, float]]


@dataclass
class _Projection:
    """A linear map whose output is its pieces' outputs side by side."""

    pieces: list[_Piece]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        outputs = [_apply(piece, x) for piece in self.pieces]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """residual + self(x), in one matmul where the projection is a plain weight."""
        import torch

        if len(self.pieces) == 1 and not self.pieces[0].low_rank:
            return torch.addmm(residual, x, self.pieces[0].weight.t())
        return residual + self(x)


def _apply(piece: _Piece, x: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    y = F.linear(x, piece.weight)
    for a, b, scale in piece.low_rank:
        y = y + F.linear(F.linear(x, a), b) * scale
    return y


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: _Projection
    out: _Projection
    post_norm: torch.Tensor
    gate_up: _Projection
    down: _Projection


@dataclass
class DecodePlan:
    """Everything a decode step reads: weights in the order they are used, and the shapes."""

    embedding: torch.Tensor
    layers: list[_Layer]
    final_norm: torch.Tensor
    head: _Projection
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    eps: float
    inv_freq: torch.Tensor
    rope_scaling: float
    threads: int | None  # intra-op threads for a step (None: the process's own setting)

    def rotary_table(self, positions: int) -> torch.Tensor:
        """[positions, 2, head_dim]: cos and signed sin as Hugging Face's rotary embedding computes them."""
        import torch

        angles = torch.arange(positions, device=self.inv_freq.device).float()[:, None] * self.inv_freq.float()
        both = torch.cat((angles, angles), dim=-1)
        dtype = self.embedding.dtype
        cos = (both.cos() * self.rope_scaling).to(dtype)
        sin = (both.sin() * self.rope_scaling).to(dtype)
        half = self.head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * [-sin_low, sin_high]: one roll instead of two slices and a cat.
        return torch.stack((cos, torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)), dim=1)

    def step(
        self,
        token_ids: torch.Tensor,
        rotary: torch.Tensor,
        cache: DynamicCache,
        padding: torch.Tensor | None,
    ) -> torch.Tensor:
        """fp32 logits [R, V] of the next token after `token_ids` [R]; `rotary` [R, 2, head_dim] holds the
        rows' rows of `rotary_table`; `padding` [R, 1, 1, positions] bool is True where a row has no token
        (None: no row is padded)."""
        import torch
        import torch.nn.functional as F

        rows, heads, kv_heads, dim = token_ids.shape[0], self.heads, self.kv_heads, self.head_dim
        cos, sin = rotary[:, :1], rotary[:, 1:]
        hidden = F.embedding(token_ids, self.embedding)
        for layer, cache_layer in zip(self.layers, cache.layers, strict=True):
            qkv = layer.qkv(_rms_norm(hidden, layer.input_norm, self.eps)).view(
                rows, heads + 2 * kv_heads, dim
            )
            qk = qkv[:, : heads + kv_heads]
            qk = torch.addcmul(qk * cos, qk.roll(dim // 2, dims=-1), sin)
            keys, values = cache_layer.update(
                qk[:, heads:].unsqueeze(2), qkv[:, heads + kv_heads :].unsqueeze(2)
            )
            query = qk[:, :heads].view(rows, kv_heads, heads // kv_heads, dim)
            attended = _attention(query, keys, values, padding)
            hidden = layer.out.add_to(hidden, attended.reshape(rows, heads * dim))
            gate, up = layer.gate_up(_rms_norm(hidden, layer.post_norm, self.eps)).split(
                self.intermediate, -1
            )
            hidden = layer.down.add_to(hidden, F.silu(gate) * up)
        return self.head(_rms_norm(hidden, self.final_norm, self.eps)).float()


def _attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, padding: torch.Tensor | None
) -> torch.Tensor:
    """One query per row: `query` [R, kv_heads, group, D] (the heads sharing each key/value head),
    `keys`/`values` [R, kv_heads, positions, D]; returns [R, kv_heads, group, D].

    Two batched matmuls and a softmax, Hugging Face's eager attention: with a single query position,
    the fused kernel's per-head setup costs more than the products (bench/README.md, "Decode attention
    as two matmuls")."""
    import torch

    scores = torch.matmul(query, keys.transpose(-1, -2)).mul_(query.shape[-1] ** -0.5)
    if padding is not None:
        scores.masked_fill_(padding, float("-inf"))
    weights = scores.softmax(-1, dtype=torch.float32).to(values.dtype)  # fp32 softmax, as HF does
    return torch.matmul(weights, values)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    normed = x.float()
    normed = normed * torch.rsqrt(normed.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)  # Hugging Face's order for half-precision models


def is_small(module: torch.nn.Module) -> bool:
    """Whether `module`'s parameters fit in `FUSE_MAX_BYTES`."""
    return sum(p.numel() * p.element_size() for p in module.parameters()) <= FUSE_MAX_BYTES


def small_model_threads(module: torch.nn.Module) -> int | None:
    """The intra-op threads of `module`'s sampling passes (None: the process's own setting)."""
    return SMALL_MODEL_DECODE_THREADS if is_small(module) else None


def decodes_in_place(cache: DynamicCache | None) -> bool:
    """The cache is the sampler's own, which the lean step writes into."""
    return cache is not None and all(isinstance(layer, RoomyLayer) for layer in cache.layers)


def plan_for(module: torch.nn.Module) -> DecodePlan | None:
    """The lean step for `module` as its weights and active adapter stand now (None: not a model it can
    reproduce). Plans are kept per module and rebuilt only when a weight they read has changed."""
    tensors = _read_tensors(module)
    if tensors is None:
        return None
    if any(t.is_inference() for t in tensors):  # no version counter to tell a change by: build afresh
        return _build(module)
    key = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    known = _plans.get(module)
    if known is not None and known[0] == key:
        return known[1]
    plan = _build(module)
    if plan is not None:
        _plans[module] = (key, plan)
    return plan


def _supported_config(module: torch.nn.Module) -> bool:
    config = getattr(module, "config", None)
    if config is None or getattr(config, "model_type", None) != "llama":
        return False
    rope = getattr(config, "rope_parameters", None) or {}
    return (
        config.hidden_act == "silu"
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "pretraining_tp", 1) in (None, 1)
        and rope.get("rope_type", "default") in _STATIC_ROPE
        and hasattr(module, "model")
        and len(module.model.layers) == config.num_hidden_layers
    )


def _linears(module: torch.nn.Module) -> list[torch.nn.Module]:
    """Every linear map a decode step applies, in a fixed order."""
    linears = []
    for layer in module.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears += [
            attn.q_proj,
            attn.k_proj,
            attn.v_proj,
            attn.o_proj,
            mlp.gate_proj,
            mlp.up_proj,
            mlp.down_proj,
        ]
    return [*linears, module.get_output_embeddings()]


def _read_tensors(module: torch.nn.Module) -> list[torch.Tensor] | None:
    """Every tensor the plan of `module` would read (None: unsupported), for spotting changed weights."""
    import torch

    if not _supported_config(module):
        return None
    if not isinstance(module.get_input_embeddings(), torch.nn.Embedding):
        return None
    tensors: list[torch.Tensor] = [module.get_input_embeddings().weight, module.model.norm.weight]
    for layer in module.model.layers:
        tensors += [layer.input_layernorm.weight, layer.post_attention_layernorm.weight]
    for linear in _linears(module):
        piece = _piece(linear)
        if piece is None:
            return None
        tensors.append(piece.weight)
        tensors += [t for a, b, _ in piece.low_rank for t in (a, b)]
    return tensors


def _piece(linear: torch.nn.Module) -> _Piece | None:
    """The weight and active low-rank terms of an `nn.Linear`, plain or wrapped by peft's LoRA layer."""
    import torch

    if type(linear) is torch.nn.Linear:
        return _Piece(linear.weight, []) if linear.bias is None else None
    base = getattr(linear, "base_layer", None)
    if type(base) is not torch.nn.Linear or base.bias is not None or not hasattr(linear, "lora_A"):
        return None
    if linear.disable_adapters or linear.merged:
        return _Piece(base.weight, [])
    low_rank = []
    for name in linear.active_adapters:
        if name not in linear.lora_A:
            continue
        if name in getattr(linear, "lora_variant", {}) or linear.use_dora.get(name, False):
            return None
        a, b, dropout = linear.lora_A[name], linear.lora_B[name], linear.lora_dropout[name]
        if a.bias is not None or b.bias is not None:
            return None
        if not isinstance(dropout, torch.nn.Identity) and (linear.training and dropout.p > 0):
            return None
        if a.weight.dtype != base.weight.dtype:
            return None
        low_rank.append((a.weight, b.weight, float(linear.scaling[name])))
    return _Piece(base.weight, low_rank)


def _build(module: torch.nn.Module) -> DecodePlan | None:
    config = module.config
    pieces = [_piece(linear) for linear in _linears(module)]
    if any(p is None for p in pieces):
        return None
    fuse = is_small(module)
    layers = []
    for index, layer in enumerate(module.model.layers):
        q, k, v, o, gate, up, down = pieces[7 * index : 7 * index + 7]
        layers.append(
            _Layer(
                input_norm=layer.input_layernorm.weight,
                qkv=_projection([q, k, v], fuse),
                out=_projection([o], fuse),
                post_norm=layer.post_attention_layernorm.weight,
                gate_up=_projection([gate, up], fuse),
                down=_projection([down], fuse),
            )
        )
    rotary = module.model.rotary_emb
    heads = config.num_attention_heads
    return DecodePlan(
        embedding=module.get_input_embeddings().weight,
        layers=layers,
        final_norm=module.model.norm.weight,
        head=_projection([pieces[-1]], fuse),
        heads=heads,
        kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        intermediate=config.intermediate_size,
        eps=config.rms_norm_eps,
        inv_freq=rotary.inv_freq,
        rope_scaling=float(rotary.attention_scaling),
        threads=small_model_threads(module),
    )


def _projection(pieces: list[_Piece | None], fuse: bool) -> _Projection:
    """Side-by-side pieces; fused: one merged weight (each LoRA product added into a copy of its base)."""
    import torch

    present = [p for p in pieces if p is not None]
    if not fuse:
        return _Projection(present)
    merged = []
    for piece in present:
        weight = piece.weight
        for a, b, scale in piece.low_rank:
            weight = weight + (b @ a) * scale
        merged.append(weight)
    return _Projection([_Piece(merged[0] if len(merged) == 1 else torch.cat(merged), [])])
