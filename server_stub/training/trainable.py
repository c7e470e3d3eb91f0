"""A model being trained: the module to run and the named tensors that learn.

Full-weight models own a private copy of the base; LoRA models are one adapter on the base's
shared `LoraHub`. Either way the engine sees a name -> parameter dict (HF names for full weights,
PEFT adapter-file names for LoRA), which is what checkpoints, snapshots and AdamW key on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server_stub.engine import UserError
from server_stub.models.lora_hub import LoraHub, LoraSpec
from server_stub.training.adamw import AdamW
from server_stub.training.reward_head import REWARD_HEAD_WEIGHT, new_reward_head

if TYPE_CHECKING:
    import torch


def whole_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` itself, or all of it when it is a shard of a distributed tensor (a collective)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@dataclass
class TrainableModel:
    model_id: str
    base_model: str
    lora: LoraSpec | None
    lora_seed: int | None
    params: dict[str, torch.nn.Parameter]
    optimizer: AdamW
    _module: Callable[[bool], torch.nn.Module]
    _release: Callable[[], None]
    reward_head: torch.nn.Parameter | None = None  # also in `params`, under REWARD_HEAD_WEIGHT

    @property
    def is_lora(self) -> bool:
        return self.lora is not None

    @property
    def body_params(self) -> dict[str, torch.nn.Parameter]:
        """The adapter or model tensors: `params` without the reward head (what a sampler computes with)."""
        return {name: param for name, param in self.params.items() if name != REWARD_HEAD_WEIGHT}

    def add_reward_head(self) -> None:
        """Give the model a new (zero) reward head, trained with its other tensors."""
        head = new_reward_head(self.module())
        self.reward_head = head
        self.params[REWARD_HEAD_WEIGHT] = head
        self.optimizer = AdamW(self.params)

    def module(self, trainable: bool = True) -> torch.nn.Module:
        """The HF model, set up to compute this model (its adapter active when LoRA)."""
        return self._module(trainable)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """An independent, whole copy of the weights a sampler uses (immutable snapshots are built from it).

        A weight sharded over ranks is gathered first: every rank must call this together."""
        return {name: whole_tensor(param.detach()).clone() for name, param in self.body_params.items()}

    def _expected(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.nn.Parameter]:
        """The tensors `tensors` must match: all of them, or the body alone when it brings no head
        (a reward model started from a head-less checkpoint keeps its own head)."""
        return self.params if REWARD_HEAD_WEIGHT in tensors else self.body_params

    def check_compatible(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """UserError unless `tensors` has exactly this model's names and shapes (the head may be left out)."""
        expected = self._expected(tensors)
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            raise UserError(
                f"{source} does not match this model: {len(missing)} tensors missing "
                f"(e.g. {missing[:1]}), {len(extra)} unexpected (e.g. {extra[:1]})",
                field="path",
            )
        for name, param in expected.items():
            if tuple(tensors[name].shape) != tuple(param.shape):
                raise UserError(
                    f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, the model has "
                    f"{tuple(param.shape)}",
                    field="path",
                )

    def load_weights(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Copy `tensors` into the parameters (validated first, so a mismatch changes nothing)."""
        import torch

        self.check_compatible(tensors, source)
        with torch.no_grad():
            for name, param in self._expected(tensors).items():
                param.copy_(tensors[name].to(device=param.device, dtype=param.dtype))

    def release(self) -> None:
        self._release()


def full_weight_model(model_id: str, base_model: str, module: torch.nn.Module) -> TrainableModel:
    """Full-weight training on `module`, the model's own copy of the base weights."""
    module.requires_grad_(True)
    params = dict(module.named_parameters())  # tied weights appear once, under their first name
    return TrainableModel(
        model_id=model_id,
        base_model=base_model,
        lora=None,
        lora_seed=None,
        params=params,
        optimizer=AdamW(params),
        _module=lambda trainable: module,
        _release=lambda: None,
    )


def lora_model(
    model_id: str, base_model: str, hub: LoraHub, adapter: str, spec: LoraSpec, seed: int
) -> TrainableModel:
    """A new adapter on the shared base; the base weights stay frozen."""
    try:
        hub.add(adapter, spec, seed=seed, trainable=True)
    except ValueError as exc:  # peft: none of the target modules exist in this architecture
        raise UserError(f"cannot add LoRA to {base_model!r}: {exc}", field="lora_config") from exc
    params = hub.parameters_of(adapter)
    if not params:
        hub.remove(adapter)
        raise UserError(
            f"base model {base_model!r} has none of the LoRA target modules {spec.target_modules()}",
            field="lora_config",
        )
    return TrainableModel(
        model_id=model_id,
        base_model=base_model,
        lora=spec,
        lora_seed=seed,
        params=params,
        optimizer=AdamW(params),
        _module=lambda trainable: hub.activate(adapter, trainable),
        _release=lambda: hub.remove(adapter),
    )
