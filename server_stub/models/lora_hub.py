"""Several LoRA adapters on one shared, frozen base model (peft), switched per call.

Every LoRA training client, every LoRA sampler snapshot and the base itself run through the same
module: only the active adapter changes. Adapters are named internally (`train3`, `sample_r8_amu`)
because torch module names cannot contain the characters that model ids may.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from transformers import PreTrainedModel

ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
UNEMBED_MODULES = ("lm_head",)
LORA_ALPHA = 32  # PEFT-style scaling alpha / rank


@dataclass(frozen=True)
class LoraSpec:
    """The shape of an adapter: everything but its numbers."""

    rank: int
    train_attn: bool = True
    train_mlp: bool = True
    train_unembed: bool = True
    alpha: int = LORA_ALPHA

    def target_modules(self) -> list[str]:
        return [
            *(ATTN_MODULES if self.train_attn else ()),
            *(MLP_MODULES if self.train_mlp else ()),
            *(UNEMBED_MODULES if self.train_unembed else ()),
        ]

    @classmethod
    def from_dict(cls, value: object) -> LoraSpec | None:
        """The spec stored in a metadata file (None there means full weights)."""
        return cls(**value) if isinstance(value, dict) else None

    @property
    def slot_name(self) -> str:
        """Adapter name of the sampling slot shared by every snapshot of this shape."""
        flags = "".join(
            f for f, on in (("a", self.train_attn), ("m", self.train_mlp), ("u", self.train_unembed)) if on
        )
        return f"sample_r{self.rank}_{flags}"

    def peft_config(self, base_model_name: str, inference: bool = False) -> PeftLoraConfig:
        from peft import LoraConfig as PeftLoraConfig

        return PeftLoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=0.0,
            bias="none",
            target_modules=self.target_modules(),
            task_type="CAUSAL_LM",
            base_model_name_or_path=base_model_name,
            inference_mode=inference,
        )


class LoraHub:
    """Named adapters on one base; `activate` selects what the next forward computes."""

    def __init__(self, base: PreTrainedModel, base_model_name: str):
        self._base = base
        self._base_name = base_model_name
        self._peft = None  # the PeftModel, created with the first adapter
        self._active: tuple[str | None, bool] | None = None
        self.specs: dict[str, LoraSpec] = {}

    @property
    def base_module(self) -> torch.nn.Module:
        """The shared Hugging Face model (LoRA layers injected once any adapter exists); no side effects."""
        return self._base

    def add(self, adapter: str, spec: LoraSpec, seed: int, trainable: bool) -> None:
        """Inject a fresh adapter: A from a seeded Kaiming init, B zero (so it starts as the base)."""
        import torch
        from peft import get_peft_model

        config = spec.peft_config(self._base_name, inference=not trainable)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft warns about LoRA on a tied lm_head; the base stays frozen
            torch.manual_seed(seed)
            if self._peft is None:
                self._peft = get_peft_model(self._base, config, adapter_name=adapter)
            else:
                self._peft.add_adapter(adapter, config)
        self.specs[adapter] = spec
        self._active = None

    def remove(self, adapter: str) -> None:
        if self._peft is None or adapter not in self.specs:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._peft.delete_adapter(adapter)
        del self.specs[adapter]
        self._active = None

    def parameters_of(self, adapter: str) -> dict[str, torch.nn.Parameter]:
        """The adapter's tensors under their PEFT file names (adapter name removed)."""
        assert self._peft is not None
        marker = f".{adapter}."
        return {
            name.replace(marker, ".", 1): param
            for name, param in self._peft.named_parameters()
            if marker in name and ".lora_" in name
        }

    def activate(self, adapter: str | None, trainable: bool = False) -> torch.nn.Module:
        """Make `adapter` (None = the plain base) the one the module computes; returns the module."""
        if self._peft is None or self._active == (adapter, trainable):
            return self._base
        tuner = self._peft.base_model
        if adapter is None:
            tuner.disable_adapter_layers()
        else:
            tuner.enable_adapter_layers()
            tuner.set_adapter(adapter, inference_mode=not trainable)
        self._active = (adapter, trainable)
        return self._base
